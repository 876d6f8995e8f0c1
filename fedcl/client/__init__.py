"""The client side of a run: the ClientApp (:mod:`fedcl.client.app`), one handler per action, the instruction."""

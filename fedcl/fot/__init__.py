"""Federated Orthogonal Training: the GPSE message contract, the client statistics and the server bases."""

"""Import the project's packages in one fixed order, before anything else (the apps' first import).

Flower's simulation imports the ServerApp and the ClientApp in two threads of one process
at the same time. A package whose ``__init__`` imports its own modules holds its module
lock while those import others; a thread that meanwhile imports one of those modules
directly holds that module's lock and waits for the package: a deadlock, which Python
reports as ``_DeadlockError`` and the run dies. With both apps importing every package
first, in this one order, a thread only ever waits for a package the other thread is
completing, never for a lock it holds itself.
"""

from __future__ import annotations

import fedcl.config  # noqa: F401
import fedcl.data  # noqa: F401
import fedcl.errors  # noqa: F401
import fedcl.fot  # noqa: F401
import fedcl.methods  # noqa: F401
import fedcl.metrics  # noqa: F401
import fedcl.models  # noqa: F401
import fedcl.privacy  # noqa: F401
import fedcl.unlearning  # noqa: F401

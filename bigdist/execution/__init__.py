"""The execution layer: a job as bounded waves of fused read-and-compute tasks, each finished block written.

``jobs`` describes a job in numbers (what ``bd.plan`` reads); ``waves``
runs it with a bounded window of tasks in flight, refilled as they finish,
through ``executors`` (the ambient scheduler: a Client, a thread pool,
inline); ``sources`` lets a task read its own row blocks; ``panels`` builds
the jobs of (query block, train panel) tasks and runs them, for ``knn`` (kNN
and the self-join), ``labelled`` (``bigdist classify``) and ``radius``
(radius neighbours); ``blocks`` (independent blocks: distance matrices)
writes through the waves too; ``passes`` runs the passes of k-means and mean
shift (partial states folded on the client) and writes their labels.
"""

from __future__ import annotations

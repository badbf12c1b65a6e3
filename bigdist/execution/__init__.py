"""The execution layer: a job as bounded waves of fused read-and-compute tasks, each finished block written.

``jobs`` describes a job in numbers (what ``bd.plan`` reads); ``waves``
runs it with a bounded window of tasks in flight, refilled as they finish,
through ``executors`` (the ambient scheduler: a Client, a thread pool,
inline); ``sources`` lets a task read its own row blocks; ``knn`` (kNN and
the self-join) and ``blocks`` (independent blocks: distance matrices) write
through them; ``passes`` runs the passes of k-means and mean shift (partial
states folded on the client) and writes their labels.
"""

from __future__ import annotations

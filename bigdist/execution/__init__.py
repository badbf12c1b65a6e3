"""The execution layer: a job as bounded waves of fused read-and-compute tasks, each finished block written.

``jobs`` describes a job in numbers (what ``bd.plan`` reads); ``waves``
runs it on the ambient scheduler with a bounded window of tasks in flight.
"""

from __future__ import annotations

"""The execution layer: a job as a plan (tasks, FLOPs, bytes, time, disk) and as the waves that run it."""

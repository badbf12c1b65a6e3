"""Draw the clusters of a 2-D dataset from a bigdist k-means or mean-shift output, to PNG.

    python scripts/plot_clusters.py --data data.zarr --clusters km.zarr --out clusters.png
    python scripts/plot_clusters.py --data data.zarr --clusters ms.zarr --out modes.png

Points are coloured by label (a sample of --max-points of them; rows that
mean shift left unclustered, label -1, in grey), centroids or modes marked
with a cross. Needs the ``plot`` extra (matplotlib).
"""

from __future__ import annotations

import argparse

try:
    import matplotlib
except ImportError:
    raise SystemExit("plot_clusters.py needs matplotlib, in bigdist's plot extra: pip install -e '.[plot]'") from None

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bigdist as bd  # noqa: E402
from bigdist.io import read_group  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Zarr array of the clustered rows")
    parser.add_argument("--clusters", required=True, help="output group of bigdist kmeans or bigdist meanshift")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--max-points", type=int, default=50_000)
    args = parser.parse_args()

    data = bd.open_array(args.data)
    group = read_group(args.clusters)
    if data.shape[1] < 2:
        parser.error(f"{args.data} has {data.shape[1]} feature; the plot needs 2 (the first two are drawn)")
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(data.shape[0], size=min(args.max_points, data.shape[0]), replace=False))
    points = data[rows, :2].compute()
    labels = group["labels"][rows].compute()
    # k-means writes "centroids", mean shift "cluster_centers" (its modes).
    what = "clusters" if "centroids" in group else "modes"
    centroids = group["centroids" if "centroids" in group else "cluster_centers"].compute()

    fig, ax = plt.subplots(figsize=(7, 7))
    orphans = labels < 0
    ax.scatter(points[orphans, 0], points[orphans, 1], c="0.7", s=2)
    ax.scatter(points[~orphans, 0], points[~orphans, 1], c=labels[~orphans], s=2, cmap="tab20")
    ax.plot(centroids[:, 0], centroids[:, 1], "x", color="k", markersize=10, mew=4)
    ax.plot(centroids[:, 0], centroids[:, 1], "x", color="m", markersize=10, mew=2)
    ax.set_aspect("equal")
    ax.set_title(f"{len(centroids)} {what} of {data.shape[0]:,} points")
    fig.savefig(args.out, dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()

"""How well per-country routing signatures follow the cultural clusters: for each run, the share
of countries whose nearest other country (Euclidean distance between `cuma eval --routing`
signatures) is in the same cluster of data/cultural_clusters.csv, and the mean distance within
clusters against between them (below 1: countries of one cluster route alike).

    python3 scripts/routing_clusters.py RUN_DIR [RUN_DIR ...]   # each holds routing.json
"""
import csv
import json
import math
import pathlib
import sys

CLUSTERS = pathlib.Path(__file__).resolve().parent.parent / "data" / "cultural_clusters.csv"


def main():
    clusters = {row["iso3"]: row["cluster"] for row in csv.DictReader(CLUSTERS.open())}
    print("| run | countries | nearest neighbour in the same cluster | by chance | mean distance within / between clusters |")
    print("|---|---|---|---|---|")
    for run in sys.argv[1:]:
        signatures = json.loads((pathlib.Path(run) / "routing.json").read_text())["signatures"]
        names = sorted(n for n in signatures if n in clusters)

        def dist(a, b):
            return math.sqrt(sum((x - y) ** 2 for x, y in zip(signatures[a], signatures[b])))

        same = sum(clusters[a] == clusters[min((b for b in names if b != a), key=lambda b: dist(a, b))] for a in names)
        within, between = [], []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (within if clusters[a] == clusters[b] else between).append(dist(a, b))
        w, bt = sum(within) / len(within), sum(between) / len(between)
        # A random other country shares the cluster with this probability.
        chance = 2 * len(within) / (len(names) * (len(names) - 1))
        print(f"| {pathlib.Path(run).name} | {len(names)} | {same}/{len(names)} ({same / len(names):.0%}) | {chance:.0%} | {w:.4f} / {bt:.4f} = {w / bt:.3f} |")


if __name__ == "__main__":
    main()

#!/bin/sh
# Renders the architecture diagrams to SVG for the docs (needs Graphviz: apt-get install graphviz).
set -e
cd "$(dirname "$0")"
for f in *.dot; do dot -Tsvg "$f" -o "../_static/${f%.dot}.svg"; dot -Tpng -Gdpi=110 "$f" -o "/tmp/${f%.dot}.png"; done

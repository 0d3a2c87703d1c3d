"""Sphinx directive ``.. zoo-table::``: the model-zoo table, generated from the live registry."""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

import clg_layers


class ZooTable(SphinxDirective):
    """Render every registered model's parameters, MACs at 256² and metadata as a list-table."""

    def run(self) -> list[nodes.Node]:
        rows = [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - name",
            "     - params",
            "     - G MACs @ 3×256²",
            "     - config",
            "     - size multiple",
            "     - fp16 / bf16",
        ]
        for name in clg_layers.list_models():
            info = clg_layers.model_info(name)
            with __import__("torch").device("meta"):
                config = clg_layers.build(name).config
            short = ", ".join(
                f"{k}={v}"
                for k, v in config.items()
                if k in ("dim", "depths", "num_heads", "expansion", "cnn_groups")
            )
            rows += [
                f"   * - ``{name}``",
                f"     - {info.params / 1e6:.2f} M",
                f"     - {info.gmacs:.1f}",
                f"     - {short}",
                f"     - {info.size_multiple}",
                f"     - {'yes' if info.supports_half else 'no'} / {'yes' if info.supports_bf16 else 'no'}",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(rows), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("zoo-table", ZooTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

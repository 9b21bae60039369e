"""Text labels on a figure's data that neither overlap each other nor leave the panel.

Written here because matplotlib has no label placement of its own (adjustText would be one more
dependency for two figures): the volcano plots' gene names (:mod:`pinnacle.compare`) and the
cell-type numbers on a UMAP (:mod:`pinnacle.rna_integrate`) share it.
"""

from __future__ import annotations

from collections.abc import Sequence


def place_labels(ax, texts, spots: Sequence[tuple], *, pad: tuple[float, float] = (1.05, 1.1)) -> None:
    """Put each label at the first of ``spots`` where it overlaps no label placed before it and
    stays inside the panel, or else where it overlaps (and sticks out) least. Works in display
    space, so call it once the figure's layout is final.

    Parameters
    ----------
    ax
        The panel.
    texts
        :class:`~matplotlib.text.Annotation` objects in offset points, placed in this order.
    spots
        Offsets to try, ``(dx, dy)`` or ``(dx, dy, horizontal alignment)``, in points.
    pad
        Each label's box is widened and heightened by these factors before testing overlaps.
    """
    from matplotlib.text import Text

    renderer = ax.figure.canvas.get_renderer()
    panel = ax.get_window_extent(renderer)
    placed = []

    def cost(box):
        out = (max(0.0, panel.x0 - box.x0) + max(0.0, box.x1 - panel.x1) + max(0.0, panel.y0 - box.y0)
               + max(0.0, box.y1 - panel.y1)) * box.height
        return out + sum(max(0.0, min(box.x1, b.x1) - max(box.x0, b.x0))
                         * max(0.0, min(box.y1, b.y1) - max(box.y0, b.y0)) for b in placed)

    for t in texts:
        best = None
        for spot in spots:
            t.xyann = spot[:2]
            if len(spot) > 2:
                t.set_horizontalalignment(spot[2])
            t.update_positions(renderer)
            box = Text.get_window_extent(t, renderer).expanded(*pad)  # the text, not its leader line
            c = cost(box)
            if best is None or c < best[0]:
                best = (c, spot, box)
            if c == 0:
                break
        _, spot, box = best
        t.xyann = spot[:2]
        if len(spot) > 2:
            t.set_horizontalalignment(spot[2])
        placed.append(box)

"""Stage 3, rendering a plan at full resolution: the recipe kernel (:mod:`.kernel`,
a pure function of a recipe and its parent files) run by a local process pool
(:mod:`.pool`) or Ray tasks (:mod:`.ray`), and what a render writes besides the
images (:mod:`.outputs`: job list, resume journal, manifest, summary, stages).
"""

from .kernel import RenderJob, RenderOptions, render_recipe
from .outputs import BalanceResult

__all__ = ["BalanceResult", "RenderJob", "RenderOptions", "render_recipe"]

"""Count the instances received since start-up, by modality, and serve the counts at /hello/modalities."""

from collections import Counter

from quart import Blueprint

from isengard import hookimpl
from isengard.model import ResourceType

counts: Counter[str] = Counter()
bp = Blueprint("hello", __name__)


@bp.get("/hello/modalities")
async def modalities() -> dict[str, int]:
    """Instances received since start-up, by modality."""
    return dict(counts)


@hookimpl
def register_routes(app, context):
    app.register_blueprint(bp)


@hookimpl
def on_stored(instance):
    counts[instance.main_tags[ResourceType.SERIES].get("Modality", "?")] += 1

"""The headers of every web page the server or a plugin serves (Explorer, slide viewer, image viewer).

One policy for all: the page and everything it loads come from the server itself, nothing inline, no framing,
no referrer leaking a patient's URL to another site. Plugins import it instead of keeping copies that drift.
"""

from __future__ import annotations


def page_headers(*, images: str = "'self' data:", forms: bool = False) -> dict[str, str]:
    """Security headers of a page. ``images``: the img-src sources (``data:`` spares the browser a request for
    /favicon.ico; the Explorer adds ``blob:`` for previews of local files); ``forms``: whether a form may submit
    to this origin."""
    policy = (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {images}",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'" if forms else "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
    return {
        "Content-Security-Policy": "; ".join(policy),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # Revalidated on each load (ETag answers 304): a server upgrade never leaves a browser on stale modules.
        "Cache-Control": "no-cache",
    }

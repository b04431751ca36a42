"""Route modules, one per group; each exposes `router(ctx) -> APIRouter` over the typed context."""

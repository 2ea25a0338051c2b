"""One module per chart family; each exposes ``section(ctx) -> Section``."""

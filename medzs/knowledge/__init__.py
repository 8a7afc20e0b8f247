"""Knowledge base: curated clinical definitions (``knowledge/``), a Chroma store and retrieval."""

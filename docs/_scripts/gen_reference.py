"""Generate the reference pages at build time (mkdocs-gen-files runs this file)."""

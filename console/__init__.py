"""The exam office's web console (/console/): staff review, decide, publish and import. See docs/console.md."""

"""The demo: a timeline both clocks fill, and the self-contained HTML report of a `grid demo` run."""

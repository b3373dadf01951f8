//! Keeps the aggregates equal to a count over `messages` (filled in by the worker refactor).

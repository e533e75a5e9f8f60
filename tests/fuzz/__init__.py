"""Property-based fuzzing of every parser that reads bytes or text from an input (see harness)."""

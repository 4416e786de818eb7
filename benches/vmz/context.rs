//! The benchmarks' errors (a message with context) and their knobs from the environment.

use super::*;

/// Errors of the benchmark: a message with context.
pub(crate) type BenchResult<T> = Result<T, String>;

/// Adds context to errors of any displayable type.
pub(crate) trait Context<T> {
    /// Maps the error to `"{what}: {error}"`.
    fn context(self, what: &str) -> BenchResult<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> BenchResult<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Reads a number from the environment.
pub(crate) fn env_usize(name: &str, default: usize) -> BenchResult<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().context(name),
        _ => Ok(default),
    }
}

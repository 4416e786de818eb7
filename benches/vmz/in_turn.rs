//! The order of a pair's two sides, alternating run by run.

use super::*;

/// Run `run` of a pair: vmz first in even runs and the reference first in
/// odd ones (A B, B A, ...), so a cost of going first (or second) falls on
/// both.
pub(crate) fn in_turn(
    run: usize,
    samples: &mut Samples,
    vmz: &dyn Fn(&mut Samples) -> BenchResult<()>,
    reference: &dyn Fn(&mut Samples) -> BenchResult<()>,
) -> BenchResult<()> {
    if run.is_multiple_of(2) {
        vmz(samples)?;
        reference(samples)
    } else {
        reference(samples)?;
        vmz(samples)
    }
}

//! Model-based property tests: random operations on all four traits, applied to the backend and to the reference model, must agree.

use crate::factory::StoreFactory;
use crate::outcome::{RuleError, RuleResult};

/// NOT WRITTEN YET.
pub async fn model_based_random_operations_match_reference(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: model_based_random_operations_match_reference".into()))
}

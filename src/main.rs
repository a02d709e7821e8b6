//! The `autoguardrails` command line.
#![forbid(unsafe_code)]

use kube::CustomResourceExt;

fn main() {
    for crd in [
        autoguardrails::crd::GuardrailPolicy::crd(),
        autoguardrails::crd::Quarantine::crd(),
    ] {
        println!("---\n{}", serde_saphyr::to_string(&crd).unwrap_or_default());
    }
}

//! `examples/custom_layer.rs` run as a test: its Swish layer gives the hand-computed forward
//! values, passes the gradient check, trains, saves, loads through a registry and predicts
//! as it did before saving (the example stops with an error otherwise).

#[allow(dead_code)]
#[path = "../examples/custom_layer.rs"]
mod example;

#[test]
fn the_custom_layer_example_runs_from_check_to_prediction() {
    example::main().unwrap();
}

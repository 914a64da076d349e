//! The orders service and its workflow.
fn main() -> std::process::ExitCode {
    cdc_services::main(cdc_services::Service::Orders)
}

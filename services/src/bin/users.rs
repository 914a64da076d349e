//! The users service.
fn main() -> std::process::ExitCode {
    cdc_services::main(cdc_services::Service::Users)
}

//! The catalog service: products, stock and reservations.
fn main() -> std::process::ExitCode {
    cdc_services::main(cdc_services::Service::Catalog)
}

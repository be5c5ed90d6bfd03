use clap::Parser;

#[derive(Parser)]
#[command(
    name = "ledgerstream",
    version,
    about = "Exactly-once CDC from PostgreSQL to Apache Iceberg"
)]
enum Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}

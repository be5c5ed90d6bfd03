use clap::Parser;
use ledgerstream::generate::{self, GenerateArgs};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "ledgerstream",
    version,
    about = "Exactly-once CDC from PostgreSQL to Apache Iceberg"
)]
enum Cli {
    /// Write realistic fintech load (with injected fraud and malformed rows) into the source database.
    Generate(GenerateArgs),
    /// Apply the embedded source-schema migrations (idempotent; `generate` also does this).
    Migrate {
        /// PostgreSQL connection URL.
        #[arg(long, env = "LEDGERSTREAM_PG_URL")]
        pg_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse() {
        Cli::Generate(args) => {
            let summary = generate::run(args).await?;
            println!("{summary}");
        }
        Cli::Migrate { pg_url } => generate::migrate(&pg_url).await?,
    }
    Ok(())
}

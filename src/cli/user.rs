//! `rekap user add|list --db DIR`: accounts of the review service.

use crate::store::{Role, Store};
use anyhow::Context;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; the password is read from the first line of stdin.
    Add {
        /// Data folder of the review service, or its PostgreSQL URL (`postgres://...`).
        #[arg(long, value_name = "DIR|URL")]
        db: PathBuf,
        /// Account name (A-Z a-z 0-9 . _ -).
        name: String,
        #[arg(long, value_parser = ["reviewer", "supervisor", "admin"], default_value = "reviewer")]
        role: String,
        /// Read the password from stdin without a prompt (for scripts). Without it, a prompt is
        /// printed on stderr and the password is still read from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        /// Data folder of the review service, or its PostgreSQL URL (`postgres://...`).
        #[arg(long, value_name = "DIR|URL")]
        db: PathBuf,
    },
}

pub fn run(args: UserArgs) -> anyhow::Result<()> {
    match args.command {
        UserCommand::Add {
            db,
            name,
            role,
            password_stdin,
        } => {
            let role = Role::parse(&role).context("unknown role")?;
            if !password_stdin {
                eprint!(
                    "Password for {name} (at least {} characters): ",
                    crate::store::MIN_PASSWORD_LEN
                );
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\n', '\r']);
            let store = Store::open_target(&db, None, crate::store::Migrate::Apply)?;
            let id = store.add_user(&name, role, password)?;
            eprintln!("created {} user {name} (id {id})", role.as_str());
            Ok(())
        }
        UserCommand::List { db } => {
            let store = Store::open_target(&db, None, crate::store::Migrate::Apply)?;
            for u in store.users()? {
                println!("{}\t{}", u.name, u.role.as_str());
            }
            Ok(())
        }
    }
}

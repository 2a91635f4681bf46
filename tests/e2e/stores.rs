//! The stores a test can run on: the local directory (the embedded default) and a bucket of
//! the real S3-compatible server. `on_every_store!` makes one test per store from a function
//! that takes a [`Store`]; the local one keeps the function's name, the S3 one is
//! `<module>::on_s3::<name>`.

use crate::common::Repo;
use crate::s3::Moto;
use crate::server::harness::Server;

/// The cluster key the S3-backed servers of these tests are given.
const CLUSTER_KEY: &str = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5";

/// Where a test's vault lives.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    /// A local directory.
    Local,
    /// `s3://<a new bucket>/vault` on the shared moto server.
    S3,
}

impl Store {
    /// A new, initialised repository on this store.
    pub fn repo(self, hint: &str) -> Repo {
        match self {
            Store::Local => Repo::init(),
            Store::S3 => {
                let (repo, _bucket) = Moto::shared().repo(hint, "vault");
                repo.init_here();
                repo
            }
        }
    }

    /// `amber serve` on this store, with extra arguments and environment.
    pub fn server(self, hint: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        match self {
            Store::Local => Server::start_with(args, env),
            Store::S3 => s3_server(&Moto::shared().bucket(hint), args, env),
        }
    }
}

/// `amber serve` with its store at `s3://<bucket>/amber` on the shared moto server (the
/// default vault's objects under `amber/vaults/default/`).
pub fn s3_server(bucket: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
    let moto = Moto::shared();
    let mut all: Vec<(String, String)> = moto.env();
    all.push(("AMBER_STORE".into(), format!("s3://{bucket}/amber")));
    all.push(("AMBER_CLUSTER_KEY".into(), CLUSTER_KEY.into()));
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(args, &all)
}

/// `on_every_store!(name => body, …)`: a `#[test] fn name` running `body(Store::Local)`,
/// and `on_s3::name` running `body(Store::S3)`.
macro_rules! on_every_store {
    ($($name:ident => $body:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $body($crate::stores::Store::Local)
            }
        )*
        mod on_s3 {
            $(
                #[test]
                fn $name() {
                    super::$body($crate::stores::Store::S3)
                }
            )*
        }
    };
}
pub(crate) use on_every_store;

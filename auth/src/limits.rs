//! Rate limits on registering and logging in: each client address and each email gets a burst
//! of attempts and then a steady refill (GCRA, by `governor`), so one address cannot flood the
//! password hashing and nobody can guess one account's password faster than its limit.
//!
//! Limits live in this process's memory: with several replicas behind a load balancer a client
//! can get up to one allowance per replica. The keyed limiters forget a key once its state is
//! indistinguishable from a fresh one ([`RateLimits::forget_stale`], run every
//! [`SWEEP_EVERY`]), so they hold only the keys seen within one burst's refill time; the
//! address limit is checked first, so new email keys arrive no faster than addresses are let
//! through, and emails are kept as 64-bit keyed hashes, so a key costs the same whatever the
//! email's length.

use std::{
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use anyhow::Context;
use common::{
    config::{bool_or, parse_or},
    metrics::{self, Registry},
};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use prometheus::{IntCounterVec, Opts};

use crate::domain::Email;

/// How often [`RateLimits::forget_stale`] runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A burst of attempts and how fast the allowance comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Attempts allowed at once from a fresh state.
    pub burst: NonZeroU32,
    /// Attempts regained per minute, one at a time at even intervals.
    pub per_minute: NonZeroU32,
}

impl Rate {
    /// `burst` at once, then `per_minute`; panics on zero (for constants and tests).
    pub const fn new(burst: u32, per_minute: u32) -> Self {
        match (NonZeroU32::new(burst), NonZeroU32::new(per_minute)) {
            (Some(burst), Some(per_minute)) => Self { burst, per_minute },
            _ => panic!("a rate needs a burst and a refill of at least 1"),
        }
    }

    fn quota(self) -> Quota {
        Quota::with_period(Duration::from_secs(60) / self.per_minute.get())
            .expect("a minute divided by a u32 is not zero")
            .allow_burst(self.burst)
    }

    /// `{prefix}_BURST` and `{prefix}_PER_MIN`, each defaulting to `self`'s.
    fn or_from_env(self, prefix: &str) -> anyhow::Result<Self> {
        let burst_var = format!("{prefix}_BURST");
        let per_minute_var = format!("{prefix}_PER_MIN");
        let burst = NonZeroU32::new(parse_or(&burst_var, self.burst.get())?)
            .with_context(|| format!("{burst_var} must be at least 1"))?;
        let per_minute = NonZeroU32::new(parse_or(&per_minute_var, self.per_minute.get())?)
            .with_context(|| format!("{per_minute_var} must be at least 1"))?;
        Ok(Self { burst, per_minute })
    }
}

/// The limits on `POST /auth/login` and `POST /auth/register`, and whom to believe about the
/// client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_ENABLED`, default true. Off only for load generated on purpose (the bench,
    /// the chaos scenarios): nothing else stands between the internet and password guessing.
    pub enabled: bool,
    /// `RATE_LIMIT_LOGIN_PER_IP_{BURST,PER_MIN}`, default 5 and 30: logins from one address
    /// (one /64 for IPv6), whatever the email. The bursts of one address, login's and
    /// register's together, stay below the hash queue's room (4 x 2 threads queued + 2
    /// running by default), so one address cannot fill it and turn others away with 503.
    pub login_per_ip: Rate,
    /// `RATE_LIMIT_LOGIN_PER_EMAIL_{BURST,PER_MIN}`, default 10 and 1: logins for one email,
    /// from any address; the brute-force limit of one account.
    pub login_per_email: Rate,
    /// `RATE_LIMIT_REGISTER_PER_IP_{BURST,PER_MIN}`, default 3 and 6: registrations from one
    /// address.
    pub register_per_ip: Rate,
    /// `RATE_LIMIT_REGISTER_PER_EMAIL_{BURST,PER_MIN}`, default 3 and 1: registrations of one
    /// email, so its 409 cannot be asked about in bulk.
    pub register_per_email: Rate,
    /// `TRUSTED_PROXIES`, default none: comma-separated addresses or CIDRs of the reverse
    /// proxies in front of auth. Only a request whose TCP peer is one of them has its client
    /// address taken from `X-Forwarded-For`.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RateLimitConfig {
    /// The production defaults: a person mistyping a password never meets them; a script does.
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_ip: Rate::new(5, 30),
            login_per_email: Rate::new(10, 1),
            register_per_ip: Rate::new(3, 6),
            register_per_email: Rate::new(3, 1),
            trusted_proxies: Vec::new(),
        }
    }
}

impl RateLimitConfig {
    /// Reads the limits from the environment, each defaulting to [`Self::default`]'s.
    pub fn from_env() -> anyhow::Result<Self> {
        let default = Self::default();
        Ok(Self {
            enabled: bool_or("RATE_LIMIT_ENABLED", default.enabled)?,
            login_per_ip: default
                .login_per_ip
                .or_from_env("RATE_LIMIT_LOGIN_PER_IP")?,
            login_per_email: default
                .login_per_email
                .or_from_env("RATE_LIMIT_LOGIN_PER_EMAIL")?,
            register_per_ip: default
                .register_per_ip
                .or_from_env("RATE_LIMIT_REGISTER_PER_IP")?,
            register_per_email: default
                .register_per_email
                .or_from_env("RATE_LIMIT_REGISTER_PER_EMAIL")?,
            trusted_proxies: parse_networks(&std::env::var("TRUSTED_PROXIES").unwrap_or_default())
                .context("TRUSTED_PROXIES")?,
        })
    }
}

/// Parses comma-separated addresses and CIDRs; an address is a network of itself alone.
pub fn parse_networks(list: &str) -> anyhow::Result<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| anyhow::anyhow!("{entry:?} is neither an address nor a CIDR"))
        })
        .collect()
}

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    Register,
}

/// Which limit refused a request, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    LoginPerIp,
    LoginPerEmail,
    RegisterPerIp,
    RegisterPerEmail,
}

impl Limit {
    /// Every limit, in the order the metrics list them.
    pub const ALL: [Limit; 4] = [
        Limit::LoginPerIp,
        Limit::LoginPerEmail,
        Limit::RegisterPerIp,
        Limit::RegisterPerEmail,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::LoginPerIp => "login_per_ip",
            Limit::LoginPerEmail => "login_per_email",
            Limit::RegisterPerIp => "register_per_ip",
            Limit::RegisterPerEmail => "register_per_email",
        }
    }
}

/// A request over its limit, and when the next one would be let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit that refused it.
    pub limit: Limit,
    /// How long until that limit lets one more through.
    pub retry_after: Duration,
}

/// The four keyed limiters of [`RateLimitConfig`].
pub struct RateLimits {
    enabled: bool,
    login_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_per_email: DefaultKeyedRateLimiter<u64>,
    register_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    register_per_email: DefaultKeyedRateLimiter<u64>,
    /// Hashes emails to their keys with a key of this process's own, so nobody can choose
    /// emails that share one another's limit.
    email_keys: RandomState,
    /// `shop_rate_limited_total{limit}`, once registered.
    refused: Option<IntCounterVec>,
}

impl RateLimits {
    /// Empty limiters with the rates of `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            enabled: config.enabled,
            login_per_ip: DefaultKeyedRateLimiter::dashmap(config.login_per_ip.quota()),
            login_per_email: DefaultKeyedRateLimiter::dashmap(config.login_per_email.quota()),
            register_per_ip: DefaultKeyedRateLimiter::dashmap(config.register_per_ip.quota()),
            register_per_email: DefaultKeyedRateLimiter::dashmap(config.register_per_email.quota()),
            email_keys: RandomState::new(),
            refused: None,
        }
    }

    /// The same limits, counting what they refuse in `shop_rate_limited_total{limit}` and
    /// showing the keys they hold in `shop_rate_limit_keys{limit}`.
    pub fn with_metrics(mut self, registry: &Registry) -> anyhow::Result<std::sync::Arc<Self>> {
        let opts = Opts::new(
            "shop_rate_limited_total",
            "Registrations and logins refused with 429, by the limit that refused them.",
        );
        let refused = metrics::register(registry, IntCounterVec::new(opts, &["limit"])?)?;
        // Shown at 0 from the start: a series that first appears at 1 shows no increase.
        for limit in Limit::ALL {
            refused.with_label_values(&[limit.label()]);
        }
        self.refused = Some(refused);
        let limits = std::sync::Arc::new(self);
        let watched = std::sync::Arc::downgrade(&limits);
        metrics::gauge_vec_fn(
            registry,
            "shop_rate_limit_keys",
            "Clients and emails the rate limits remember, by limit.",
            "limit",
            move || {
                let Some(limits) = watched.upgrade() else {
                    return Vec::new();
                };
                Limit::ALL
                    .iter()
                    .map(|&limit| (limit.label(), limits.keys(limit) as i64))
                    .collect()
            },
        )?;
        Ok(limits)
    }

    fn refuse(&self, limit: Limit, not_until: &governor::NotUntil<Instant>) -> Limited {
        if let Some(refused) = &self.refused {
            refused.with_label_values(&[limit.label()]).inc();
        }
        Limited {
            limit,
            retry_after: not_until.wait_time_from(Instant::now()),
        }
    }

    /// Counts one `action` from `client` against its address's allowance.
    pub fn check_address(&self, action: Action, client: IpAddr) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let (limiter, limit) = match action {
            Action::Login => (&self.login_per_ip, Limit::LoginPerIp),
            Action::Register => (&self.register_per_ip, Limit::RegisterPerIp),
        };
        limiter
            .check_key(&address_key(client))
            .map_err(|not_until| self.refuse(limit, &not_until))
    }

    /// Counts one `action` for `email` against its allowance, whoever asks and whether the
    /// account exists or not.
    pub fn check_email(&self, action: Action, email: &Email) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let (limiter, limit) = match action {
            Action::Login => (&self.login_per_email, Limit::LoginPerEmail),
            Action::Register => (&self.register_per_email, Limit::RegisterPerEmail),
        };
        limiter
            .check_key(&self.email_keys.hash_one(email.as_str()))
            .map_err(|not_until| self.refuse(limit, &not_until))
    }

    /// Drops every key whose allowance has refilled completely: it would behave exactly as
    /// a key never seen. Then gives the freed memory back.
    pub fn forget_stale(&self) {
        self.login_per_ip.retain_recent();
        self.login_per_email.retain_recent();
        self.register_per_ip.retain_recent();
        self.register_per_email.retain_recent();
        self.login_per_ip.shrink_to_fit();
        self.login_per_email.shrink_to_fit();
        self.register_per_ip.shrink_to_fit();
        self.register_per_email.shrink_to_fit();
    }

    /// How many keys `limit` holds now.
    pub fn keys(&self, limit: Limit) -> usize {
        match limit {
            Limit::LoginPerIp => self.login_per_ip.len(),
            Limit::LoginPerEmail => self.login_per_email.len(),
            Limit::RegisterPerIp => self.register_per_ip.len(),
            Limit::RegisterPerEmail => self.register_per_email.len(),
        }
    }
}

/// The key of a client address: an IPv4 address as it is (also when it arrives mapped into
/// IPv6), an IPv6 address as its /64, the smallest network a single site is usually given, so
/// one host cannot take a fresh allowance with each of its addresses.
fn address_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(login_per_ip: Rate, login_per_email: Rate) -> RateLimits {
        RateLimits::new(&RateLimitConfig {
            login_per_ip,
            login_per_email,
            ..RateLimitConfig::default()
        })
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn an_address_gets_its_burst_then_waits_for_the_refill() {
        let limits = limits(Rate::new(3, 60), Rate::new(100, 60));
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check_address(Action::Login, client).is_ok());
        }
        let limited = limits.check_address(Action::Login, client).unwrap_err();
        assert_eq!(limited.limit, Limit::LoginPerIp);
        assert!(
            limited.retry_after > Duration::ZERO && limited.retry_after <= Duration::from_secs(1),
            "one a second comes back: {limited:?}"
        );
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        assert!(limits.check_address(Action::Login, other).is_ok());
        assert!(
            limits.check_address(Action::Register, client).is_ok(),
            "registering has an allowance of its own"
        );
    }

    #[test]
    fn an_email_is_limited_in_every_spelling_and_alone() {
        let limits = limits(Rate::new(100, 60), Rate::new(2, 1));
        assert!(
            limits
                .check_email(Action::Login, &email("ann@example.com"))
                .is_ok()
        );
        assert!(
            limits
                .check_email(Action::Login, &email("ANN@example.com"))
                .is_ok()
        );
        let limited = limits
            .check_email(Action::Login, &email("\u{ff41}nn@example.com"))
            .unwrap_err();
        assert_eq!(limited.limit, Limit::LoginPerEmail);
        assert!(limited.retry_after > Duration::from_secs(50), "{limited:?}");
        assert!(
            limits
                .check_email(Action::Login, &email("bob@example.com"))
                .is_ok()
        );
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_an_allowance_and_mapped_ipv4_is_ipv4() {
        let limits = limits(Rate::new(1, 1), Rate::new(100, 60));
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check_address(Action::Login, first).is_ok());
        assert!(limits.check_address(Action::Login, same_64).is_err());
        assert!(limits.check_address(Action::Login, next_64).is_ok());

        let v4: IpAddr = "198.51.100.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        assert!(limits.check_address(Action::Login, v4).is_ok());
        assert!(limits.check_address(Action::Login, mapped).is_err());
    }

    #[test]
    fn disabled_limits_let_everything_through() {
        let limits = RateLimits::new(&RateLimitConfig {
            enabled: false,
            login_per_ip: Rate::new(1, 1),
            login_per_email: Rate::new(1, 1),
            ..RateLimitConfig::default()
        });
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..10 {
            assert!(limits.check_address(Action::Login, client).is_ok());
            assert!(limits.check_email(Action::Login, &email("a@b.co")).is_ok());
        }
    }

    #[test]
    fn a_key_whose_allowance_refilled_is_forgotten() {
        // 60 000 a minute: one back every millisecond, so a burst of 1 refills almost at once.
        let limits = limits(Rate::new(1, 60_000), Rate::new(1, 1));
        for n in 0..50u8 {
            let client = IpAddr::from([192, 0, 2, n]);
            limits.check_address(Action::Login, client).unwrap();
        }
        limits
            .check_email(Action::Login, &email("ann@example.com"))
            .unwrap();
        assert_eq!(limits.keys(Limit::LoginPerIp), 50);
        common::testing::run_detached(async {
            common::testing::wait_until(Duration::from_secs(5), "the keys to go stale", || async {
                limits.forget_stale();
                (limits.keys(Limit::LoginPerIp) == 0).then_some(())
            })
            .await;
        });
        assert_eq!(
            limits.keys(Limit::LoginPerEmail),
            1,
            "an email still waiting for its refill is kept"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_cidrs() {
        let networks = parse_networks(" 10.0.0.0/8, 192.0.2.1 ,::1,").unwrap();
        assert_eq!(networks.len(), 3);
        assert!(networks[1].contains(&"192.0.2.1".parse::<IpAddr>().unwrap()));
        assert!(parse_networks("").unwrap().is_empty());
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("proxy.example.com").is_err());
    }
}

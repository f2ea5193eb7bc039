//! The results of a run, as `results.json` and as the markdown of `results.md`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::argon::Argon2Bound;
use crate::stats::Summary;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub date: String,
    pub command: String,
    pub run_id: String,
    pub machine: Machine,
    /// `quick` or `full`.
    pub mode: String,
    pub warmup_secs: f64,
    pub measured_secs: f64,
    /// How many times each point ran; its figures are the medians.
    pub runs: usize,
    pub max_requests: u64,
    /// How the bench runs its own work (tokio runtime, HTTP client).
    pub harness: String,
    /// Resident memory of each service after seeding and after all load.
    pub memory: Vec<Memory>,
    pub argon2: Argon2Bound,
    pub scenarios: Vec<ScenarioResult>,
    /// From the start of setup to the report, in seconds.
    pub elapsed_secs: f64,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_kib: Option<u64>,
    pub kernel: String,
    pub cpu_model: String,
}

impl Machine {
    /// What `/proc` says about this machine.
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_kib: mem_total_kib(&read("/proc/meminfo")),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu_model: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".to_owned()),
        }
    }
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// A service's resident memory when idle after seeding, and 5 s after all load.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub service: String,
    pub idle_kib: Option<u64>,
    pub after_kib: Option<u64>,
}

/// One scenario's sweep.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub description: String,
    /// What `ratio_to_bound` divides by: a bare harness's name, or `argon2`.
    pub bound: Option<String>,
    pub points: Vec<PointResult>,
}

/// One concurrency of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct PointResult {
    pub concurrency: usize,
    #[serde(flatten)]
    pub summary: Summary,
    /// Each service's figures over the point; empty for the bare harness.
    pub services: Vec<ProcessFigures>,
    /// The bench process itself (client, and for bare rows the server side too).
    pub bench_cpu_percent: Option<f64>,
    /// The broker's and the database's processes (`rabbitmq`, `postgresql`): CPU only.
    pub infra: Vec<ProcessFigures>,
    /// CPU time of every process above (services, broker, database, bench) per successful
    /// request, in milliseconds: what one request costs the machine.
    pub cpu_ms_per_request: Option<f64>,
    /// Each run's throughput and p99, in the order they ran; the figures above are medians.
    pub runs: Vec<RunFigures>,
    /// This point's throughput over its bound's at the same concurrency: the median over the
    /// runs of each run's ratio to the bound's run next to it (the bare harness's run of the
    /// same number, or the argon2 measurement just before it).
    pub ratio_to_bound: Option<f64>,
}

/// One run of a point.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub throughput: f64,
    pub p99_ms: f64,
    /// The argon2 bound measured just before this run (login runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argon2_per_sec: Option<f64>,
}

/// A process over one point: RSS at its end, CPU over it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub service: String,
    pub rss_kib: Option<u64>,
    pub cpu_percent: Option<f64>,
}

/// Fills in `ratio_to_bound` of every point whose scenario has a bound.
pub fn fill_ratios(results: &mut Results) {
    let argon2 = results.argon2.per_sec;
    let bounds: Vec<(String, Vec<PointResult>)> = results
        .scenarios
        .iter()
        .map(|s| (s.name.clone(), s.points.clone()))
        .collect();
    for scenario in &mut results.scenarios {
        let Some(bound) = scenario.bound.clone() else {
            continue;
        };
        for point in &mut scenario.points {
            let ratios: Vec<Option<f64>> = if bound == "argon2" {
                point
                    .runs
                    .iter()
                    .map(|run| ratio(run.throughput, run.argon2_per_sec.unwrap_or(argon2)))
                    .collect()
            } else {
                let Some(divisor) =
                    bounds
                        .iter()
                        .find(|(name, _)| *name == bound)
                        .and_then(|(_, points)| {
                            points.iter().find(|p| p.concurrency == point.concurrency)
                        })
                else {
                    point.ratio_to_bound = None;
                    continue;
                };
                if point.runs.len() == divisor.runs.len() && !point.runs.is_empty() {
                    point
                        .runs
                        .iter()
                        .zip(&divisor.runs)
                        .map(|(run, by)| ratio(run.throughput, by.throughput))
                        .collect()
                } else {
                    vec![ratio(point.summary.throughput, divisor.summary.throughput)]
                }
            };
            point.ratio_to_bound = ratios
                .into_iter()
                .collect::<Option<Vec<f64>>>()
                .and_then(crate::stats::median);
        }
    }
}

fn ratio(value: f64, by: f64) -> Option<f64> {
    (by > 0.0).then(|| value / by)
}

/// The services in the column order of the scenario tables.
pub const SERVICE_COLUMNS: [&str; 4] =
    ["auth", "products-per-request", "products-direct", "orders"];
/// The servers the services use, in the column order of the scenario tables.
pub const INFRA_COLUMNS: [&str; 2] = ["rabbitmq", "postgresql"];

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "–".to_owned(), |p| format!("{p:.0}%"))
}

/// `results.md`.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(out, "- Date: {}", results.date);
    let _ = writeln!(out, "- Command: `{}`", results.command);
    let _ = writeln!(
        out,
        "- Machine: {} cores, {} GiB memory, Linux {}, {}",
        m.nproc,
        m.mem_total_kib.map_or_else(
            || "?".to_owned(),
            |k| format!("{:.1}", k as f64 / 1024.0 / 1024.0)
        ),
        m.kernel,
        m.cpu_model
    );
    let _ = writeln!(
        out,
        "- Mode: {} (per point: {} s warm-up, {} s measured or {} requests, whichever comes first)",
        results.mode, results.warmup_secs, results.measured_secs, results.max_requests
    );
    let _ = writeln!(out, "- Harness: {}", results.harness);
    let _ = writeln!(
        out,
        "- Run `{}`: setup to report took {:.0} s",
        results.run_id, results.elapsed_secs
    );
    let _ = writeln!(
        out,
        "- Each point ran {} time(s), the scenarios taking turns (run 1 of every scenario at a \
         concurrency, then run 2 in the reverse order, ...); req/s, latencies and CPU are the \
         medians of its runs, and the next-to-last column lists each run's req/s. A ratio to a \
         bound is the median of each run's ratio to the bound's run beside it (the bare \
         harness's run of the same number, or the argon2 measurement just before a login \
         run). req/s counts successful requests; latencies are of successful requests only. Service cells are RSS in MiB at \
         the end of the point and CPU over the point in % of one core; CPU ms/req is the CPU \
         time of the services, RabbitMQ, PostgreSQL and the bench per successful request.",
        results.runs
    );

    let _ = writeln!(out, "\n## Memory (RSS, MiB)\n");
    let _ = writeln!(out, "| service | idle after seeding | 5 s after all load |");
    let _ = writeln!(out, "|---|---:|---:|");
    for row in &results.memory {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row.service,
            mib(row.idle_kib),
            mib(row.after_kib)
        );
    }

    let a = &results.argon2;
    let _ = writeln!(out, "\n## argon2 bound\n");
    let _ = writeln!(
        out,
        "{} verifications ({}) in {:.2} s on {} threads in the median measurement: \
         **{:.1}/s**, the most logins this machine can do with every core hashing (each \
         measurement, one just before each login run when logins ran: {}/s).",
        a.verifications,
        a.params,
        a.secs,
        a.threads,
        a.per_sec,
        a.runs_per_sec
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    for scenario in &results.scenarios {
        let _ = writeln!(out, "\n## {}\n", scenario.name);
        let _ = writeln!(out, "{}\n", scenario.description);
        let has_services = scenario.points.iter().any(|p| !p.services.is_empty());
        let mut header =
            "| C | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |".to_owned();
        let mut rule = "|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned();
        if has_services {
            for name in SERVICE_COLUMNS {
                let _ = write!(header, " {name} |");
                rule.push_str("---|");
            }
        }
        for name in INFRA_COLUMNS {
            let _ = write!(header, " {name} CPU |");
            rule.push_str("---:|");
        }
        header.push_str(" bench CPU | CPU ms/req | req/s of each run |");
        rule.push_str("---:|---:|---|");
        if let Some(bound) = &scenario.bound {
            let _ = write!(header, " vs {bound} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for p in &scenario.points {
            let s = &p.summary;
            let _ = write!(
                out,
                "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                p.concurrency,
                s.requests,
                s.throughput,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.max_ms,
                s.errors
            );
            if has_services {
                for name in SERVICE_COLUMNS {
                    let cell = p
                        .services
                        .iter()
                        .find(|f| f.service == name)
                        .filter(|f| f.rss_kib.is_some())
                        .map_or_else(
                            || "–".to_owned(),
                            |f| format!("{} MiB, {}", mib(f.rss_kib), percent(f.cpu_percent)),
                        );
                    let _ = write!(out, " {cell} |");
                }
            }
            for name in INFRA_COLUMNS {
                let cpu = p
                    .infra
                    .iter()
                    .find(|f| f.service == name)
                    .and_then(|f| f.cpu_percent);
                let _ = write!(out, " {} |", percent(cpu));
            }
            let runs: Vec<String> = p
                .runs
                .iter()
                .map(|r| format!("{:.0}", r.throughput))
                .collect();
            let _ = write!(
                out,
                " {} | {} | {} |",
                percent(p.bench_cpu_percent),
                p.cpu_ms_per_request
                    .map_or_else(|| "–".to_owned(), |ms| format!("{ms:.2}")),
                runs.join(", ")
            );
            if scenario.bound.is_some() {
                let ratio = p
                    .ratio_to_bound
                    .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"));
                let _ = write!(out, " {ratio} |");
            }
            out.push('\n');
        }
        for p in scenario.points.iter().filter(|p| p.summary.errors > 0) {
            let kinds: Vec<String> = p
                .summary
                .error_kinds
                .iter()
                .map(|(kind, n)| format!("{kind} ×{n}"))
                .collect();
            let _ = writeln!(out, "\nErrors at C={}: {}", p.concurrency, kinds.join(", "));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn point(concurrency: usize, throughput: f64, errors: u64) -> PointResult {
        PointResult {
            concurrency,
            summary: Summary {
                requests: 100 + errors,
                ok: 100,
                errors,
                wall_secs: 2.0,
                throughput,
                p50_ms: 1.5,
                p95_ms: 3.25,
                p99_ms: 4.0,
                max_ms: 9.5,
                error_kinds: if errors > 0 {
                    BTreeMap::from([("504".to_owned(), errors)])
                } else {
                    BTreeMap::new()
                },
            },
            services: Vec::new(),
            bench_cpu_percent: Some(12.4),
            infra: vec![ProcessFigures {
                service: "rabbitmq".to_owned(),
                rss_kib: None,
                cpu_percent: Some(61.0),
            }],
            cpu_ms_per_request: Some(1.25),
            runs: vec![
                RunFigures {
                    throughput: throughput - 10.0,
                    p99_ms: 4.0,
                    argon2_per_sec: None,
                },
                RunFigures {
                    throughput,
                    p99_ms: 4.0,
                    argon2_per_sec: None,
                },
            ],
            ratio_to_bound: None,
        }
    }

    /// A small result: buy-direct at C=8 and 32, login at 8, bare-direct at 8.
    pub(crate) fn small() -> Results {
        let mut buy = point(8, 300.0, 2);
        buy.services = vec![
            ProcessFigures {
                service: "orders".to_owned(),
                rss_kib: Some(20 * 1024),
                cpu_percent: Some(33.3),
            },
            ProcessFigures {
                service: "auth".to_owned(),
                rss_kib: None,
                cpu_percent: None,
            },
        ];
        Results {
            date: "2025-01-01T00:00:00Z".to_owned(),
            command: "bench run --quick".to_owned(),
            run_id: "abc".to_owned(),
            machine: Machine {
                nproc: 2,
                mem_total_kib: Some(24 * 1024 * 1024),
                kernel: "6.1.0".to_owned(),
                cpu_model: "Test CPU".to_owned(),
            },
            mode: "quick".to_owned(),
            warmup_secs: 0.3,
            measured_secs: 2.0,
            runs: 2,
            max_requests: 200_000,
            harness: "test".to_owned(),
            memory: vec![Memory {
                service: "orders".to_owned(),
                idle_kib: Some(10 * 1024),
                after_kib: Some(15 * 1024 + 512),
            }],
            argon2: Argon2Bound {
                threads: 2,
                verifications: 150,
                secs: 2.0,
                per_sec: 75.0,
                params: "m=19456,t=2,p=1".to_owned(),
                runs_per_sec: vec![75.0, 70.0, 80.0],
            },
            scenarios: vec![
                ScenarioResult {
                    name: "buy-direct".to_owned(),
                    description: "buys".to_owned(),
                    bound: Some("bare-direct".to_owned()),
                    points: vec![buy, point(32, 100.0, 0)],
                },
                ScenarioResult {
                    name: "login".to_owned(),
                    description: "logins".to_owned(),
                    bound: Some("argon2".to_owned()),
                    points: vec![point(8, 60.0, 0)],
                },
                ScenarioResult {
                    name: "bare-direct".to_owned(),
                    description: "bare".to_owned(),
                    bound: None,
                    points: vec![point(8, 1200.0, 0)],
                },
            ],
            elapsed_secs: 61.2,
        }
    }

    #[test]
    fn ratios_divide_by_the_bound_at_the_same_concurrency_or_stay_empty() {
        let mut results = small();
        fill_ratios(&mut results);
        let buy = &results.scenarios[0].points;
        // Runs 290 and 300 against 1,190 and 1,200: the median of 0.2437 and 0.25.
        let close = |r: Option<f64>, expected: f64| r.is_some_and(|r| (r - expected).abs() < 1e-9);
        assert!(
            close(buy[0].ratio_to_bound, (290.0 / 1190.0 + 0.25) / 2.0),
            "{:?}",
            buy[0].ratio_to_bound
        );
        // The bare harness has no C=32 point here.
        assert_eq!(buy[1].ratio_to_bound, None);
        // Login runs of 50 and 60 with no measurement of their own: against the median, 75.
        let login = results.scenarios[1].points[0].ratio_to_bound;
        assert!(close(login, (50.0 / 75.0 + 0.8) / 2.0), "{login:?}");
        assert_eq!(results.scenarios[2].points[0].ratio_to_bound, None);
    }

    #[test]
    fn each_run_is_held_against_the_bound_measured_beside_it() {
        let mut results = small();
        // The machine slowed down between the runs: each ratio is 0.5, whatever the medians.
        results.scenarios[0].points[0].runs = runs(&[100.0, 300.0], None);
        results.scenarios[2].points[0].runs = runs(&[200.0, 600.0], None);
        results.scenarios[1].points[0].runs = runs(&[30.0, 90.0], Some(&[60.0, 180.0]));
        fill_ratios(&mut results);
        assert_eq!(results.scenarios[0].points[0].ratio_to_bound, Some(0.5));
        assert_eq!(results.scenarios[1].points[0].ratio_to_bound, Some(0.5));
    }

    fn runs(throughputs: &[f64], argon2: Option<&[f64]>) -> Vec<RunFigures> {
        throughputs
            .iter()
            .enumerate()
            .map(|(i, &throughput)| RunFigures {
                throughput,
                p99_ms: 1.0,
                argon2_per_sec: argon2.map(|a| a[i]),
            })
            .collect()
    }

    #[test]
    fn the_markdown_has_a_row_per_point_with_service_cells_and_ratios() {
        let mut results = small();
        fill_ratios(&mut results);
        let md = markdown(&results);
        assert!(
            md.contains("- Machine: 2 cores, 24.0 GiB memory, Linux 6.1.0, Test CPU"),
            "{md}"
        );
        assert!(md.contains("| orders | 10.0 | 15.5 |"), "{md}");
        assert!(
            md.contains(
                "150 verifications (m=19456,t=2,p=1) in 2.00 s on 2 threads in the median \
                 measurement: **75.0/s**, the most logins this machine can do with every core \
                 hashing (each measurement, one just before each login run when logins ran: \
                 75.0, 70.0, 80.0/s)."
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| C | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | auth | \
                 products-per-request | products-direct | orders | rabbitmq CPU | postgresql CPU \
                 | bench CPU | CPU ms/req | req/s of each run | vs bare-direct |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 8 | 102 | 300.0 | 1.50 | 3.25 | 4.00 | 9.50 | 2 | – | – | – | \
                 20.0 MiB, 33% | 61% | – | 12% | 1.25 | 290, 300 | 0.25 |"
            ),
            "{md}"
        );
        assert!(md.contains("| 32 | 100 | 100.0 |"), "{md}");
        assert!(
            md.contains(
                "| 8 | 100 | 60.0 | 1.50 | 3.25 | 4.00 | 9.50 | 0 | 61% | – | 12% | 1.25 | 50, 60 \
                 | 0.73 |"
            ),
            "{md}"
        );
        assert!(md.contains("Errors at C=8: 504 ×2"), "{md}");
        // The bare table has neither service columns nor a ratio.
        assert!(
            md.contains(
                "| 8 | 100 | 1200.0 | 1.50 | 3.25 | 4.00 | 9.50 | 0 | 61% | – | 12% | 1.25 | \
                 1190, 1200 |\n"
            ),
            "{md}"
        );
    }
}

//! A tiny survey simulator on `cuma-runtime`: one question's predicted answer distribution for
//! several profiles, side by side.
//!
//!   cargo run -p cuma-runtime --example survey -- runs/demo/bundle [ort|tract]

use cuma_runtime::{Backend, Bundle, Device, EngineOptions, Profile, Session, SessionOptions};

const QUESTION: &str = "How important is religion in your life?";
const OPTIONS: [&str; 4] = [
    "Very important",
    "Rather important",
    "Not very important",
    "Not at all important",
];
const PROFILES: [&str; 4] = [
    "country=Thailand,age=55-64,religion=Buddhist",
    "country=Nigeria,age=25-34,religion=Muslim",
    "country=Germany,age=25-34,religion=No religion",
    "country=Japan,age=65+,religion=No religion",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: survey <bundle dir> [ort|tract]")?;
    let backend = match args.next().as_deref() {
        None | Some("ort") => Backend::Ort { device: Device::Cpu },
        Some("tract") => Backend::Tract,
        Some(other) => return Err(format!("unknown backend {other}").into()),
    };
    let engine = EngineOptions {
        backend,
        ..Default::default()
    };
    let mut session = Session::new(
        Bundle::open(&dir)?,
        SessionOptions {
            engine,
            strict_profiles: false,
        },
    )?;
    let options: Vec<String> = OPTIONS.iter().map(|o| o.to_string()).collect();
    println!("{QUESTION}");
    println!(
        "{:<50} {}",
        "profile",
        OPTIONS.iter().map(|o| format!("{o:>21}")).collect::<String>()
    );
    for text in PROFILES {
        let answer = session.choice_distribution(&Profile::parse(text)?, QUESTION, &options, false)?;
        println!(
            "{text:<50} {}",
            answer
                .probabilities
                .iter()
                .map(|p| format!("{p:>21.3}"))
                .collect::<String>()
        );
    }
    for warning in session.take_warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

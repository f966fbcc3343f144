//! Chat prompts rendered with the model's own Jinja chat template (ChatML for SmolLM2 / Qwen,
//! header blocks for Llama 3), through minijinja with Python-compatible string methods.

use super::Message;

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if month <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        month,
        day,
    )
}

/// Today's date for templates that call `strftime_now` (Llama 3.1+): `%d`, `%b`, `%B`, `%Y`, `%m`.
fn strftime_now(format: String) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let month = MONTHS[(m - 1) as usize];
    format
        .replace("%d", &format!("{d:02}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%Y", &y.to_string())
        .replace("%B", month)
        .replace("%b", &month[..3])
}

/// The special tokens a template may print.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens<'a> {
    pub bos: Option<&'a str>,
    pub eos: Option<&'a str>,
}

/// Template instructions one rendering may execute: real chat templates need a few thousand
/// for a long conversation; a hostile one (nested `range(100000)` loops) stops here instead of
/// hanging the process.
pub const TEMPLATE_FUEL: u64 = 20_000_000;

/// The longest rendered prompt, in bytes (far beyond any model's context).
pub const MAX_RENDERED_BYTES: usize = 16 << 20;

/// Collects rendered text up to [`MAX_RENDERED_BYTES`], then refuses more.
struct CappedOutput {
    text: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + bytes.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders `messages` with `template`, ending with the assistant prompt. The error is the
/// template engine's message (a syntax error, or the template's own `raise_exception`), or says
/// that the template ran out of [`TEMPLATE_FUEL`] or wrote more than [`MAX_RENDERED_BYTES`].
pub fn render(template: &str, messages: &[Message], special: &SpecialTokens<'_>) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", strftime_now);
    env.add_template("chat", template).map_err(|e| e.to_string())?;
    let tmpl = env.get_template("chat").map_err(|e| e.to_string())?;
    let mut out = CappedOutput {
        text: Vec::new(),
        overflowed: false,
    };
    let rendered = tmpl.render_captured_to(
        minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => special.bos.unwrap_or_default(),
            eos_token => special.eos.unwrap_or_default(),
        },
        &mut out,
    );
    match rendered {
        Ok(_) => String::from_utf8(out.text).map_err(|e| format!("the template wrote invalid UTF-8: {e}")),
        Err(_) if out.overflowed => Err(format!(
            "the chat template wrote more than {} MiB; refusing it",
            MAX_RENDERED_BYTES >> 20
        )),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(format!(
            "the chat template ran more than {TEMPLATE_FUEL} instructions (a runaway loop?); refusing it"
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bos(bos: &str) -> SpecialTokens<'_> {
        SpecialTokens {
            bos: Some(bos),
            eos: None,
        }
    }

    fn chat() -> Vec<Message> {
        vec![
            Message::new("system", "You are a person from Japan."),
            Message::new("user", "  Hi there  "),
        ]
    }

    #[test]
    fn llama3_header_template_with_system_message() {
        let t = "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
        let out = render(t, &chat(), &with_bos("<|begin_of_text|>")).expect("renders");
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a person from Japan.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn chatml_template_with_python_string_methods() {
        // Qwen-style templates call Python methods such as .strip() and .startswith().
        let t = "{% for m in messages %}{% if m.role == 'system' and m.content.startswith('You') %}<|im_start|>system\n{{ m.content.strip() }}<|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let out = render(t, &chat(), &with_bos("")).expect("renders");
        assert_eq!(out, "<|im_start|>system\nYou are a person from Japan.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn template_errors_are_reported_not_panicked() {
        let t =
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be the user') }}{% endif %}";
        let err = render(t, &chat(), &with_bos("")).expect_err("raises");
        assert!(err.contains("first message must be the user"), "{err}");
        let err = render("{% for %}", &chat(), &with_bos("")).expect_err("syntax");
        assert!(err.contains("syntax"), "{err}");
        // Runaway templates end with an error instead of hanging or exhausting memory.
        let started = std::time::Instant::now();
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            &chat(),
            &with_bos(""),
        )
        .expect_err("loops");
        assert!(err.contains("instructions"), "{err}");
        let err = render(
            "{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}",
            &chat(),
            &with_bos(""),
        )
        .expect_err("huge output");
        assert!(err.contains("MiB"), "{err}");
        assert!(started.elapsed().as_secs() < 30, "limits took {:?}", started.elapsed());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
    }

    #[test]
    fn formats_month_names() {
        let s = strftime_now("%d %b %Y".into());
        assert_eq!(s.len(), 11, "{s}");
    }
}

//! A one-thread OpenAI-compatible chat endpoint for tests: each request gets the next canned
//! `(status, content)` as a `chat.completion` body; the request bodies are sent back on a channel.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::{channel, Receiver};

/// Starts the stub on a free loopback port; returns its base URL (`http://127.0.0.1:N/v1`).
pub fn start(answers: Vec<(u16, &'static str)>) -> (String, Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for (status, content) in answers {
            let Ok((stream, _)) = listener.accept() else { return };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            let payload =
                serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]}).to_string();
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
        }
    });
    (url, rx)
}

//! `kubectl port-forward` over WebSocket: the client speaks SPDY inside the
//! WebSocket (sub-protocol `SPDY/3.1+portforward.k8s.io`, each binary
//! message a piece of the SPDY byte stream, KEP-4006), so the agent only
//! unwraps the messages and pipes the bytes to the runtime's SPDY
//! port-forward server, which dials the port inside the pod's network
//! namespace for each stream pair (`port` header) kubectl opens.
//!
//! ```text
//!  kubectl ──WS[SPDY bytes]──► agent ──SPDY (portforward.k8s.io)──► containerd ──► pod netns :port
//! ```

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::remotecommand::spawn_ws_reader;
use super::websocket::{Message, MessageWriter, CLOSE_NORMAL};

/// The WebSocket sub-protocol kubectl asks for.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY sub-protocol of the runtime's port-forward server.
pub const RUNTIME_PROTOCOL: &str = "portforward.k8s.io";

/// Read size from the runtime; also the largest message sent to kubectl.
const CHUNK_BYTES: usize = 32 * 1024;

/// Pipes the tunnelled SPDY bytes until either side ends.
pub async fn tunnel<C, R>(client: C, runtime: R)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    R: AsyncRead + AsyncWrite + Send + 'static,
{
    let (client_r, client_w) = tokio::io::split(client);
    let (mut runtime_r, mut runtime_w) = tokio::io::split(runtime);
    let mut ws = MessageWriter::new(client_w);
    let mut from_client = spawn_ws_reader(client_r);
    let (tx, mut from_runtime) = mpsc::channel::<Vec<u8>>(8);
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match runtime_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    loop {
        tokio::select! {
            msg = from_client.recv() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if runtime_w.write_all(&data).await.is_err() || runtime_w.flush().await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(p))) => {
                    if ws.pong(&p).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_) | Message::Text(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    debug!("port-forward tunnel: {e}");
                    break;
                }
            },
            chunk = from_runtime.recv() => match chunk {
                Some(data) => {
                    if ws.binary(&[&data]).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = runtime_w.shutdown().await;
    let _ = ws.close(CLOSE_NORMAL).await;
}

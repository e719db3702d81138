//! For crash tests: part of a test runs in a child process (the same test
//! binary running one `#[ignore]`d test), which the test kills with
//! SIGKILL. [`TestChild`] starts it and kills it when dropped, so the child
//! never outlives a failed assertion. Not used by a running store.

use std::ffi::OsStr;
use std::io;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process running one ignored test of the current test binary.
pub struct TestChild(Child);

impl TestChild {
    /// Runs the ignored test named exactly `test` of the current test
    /// binary, with `env` added to its environment and its standard output
    /// piped (standard error is dropped).
    pub fn spawn(test: &str, env: &[(&str, &OsStr)]) -> io::Result<TestChild> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().map(TestChild)
    }

    /// Its standard output (`None` once taken).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.0.stdout.take()
    }

    /// Kills it with SIGKILL and waits for it.
    pub fn kill(&mut self) -> io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(|_| ())
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

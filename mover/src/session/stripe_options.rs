//! What `mover push --via` and its companions ask for (PROTOCOL.md §8); its own file so that `push`
//! (whose options hold it) and `stripe_send` (which runs it, with pushes) do not import each other.

use crate::proto::stripe_plan::StripeMode;
use crate::wire::stripe::DEFAULT_BLOCK_BYTES;

/// What `--via` and its companions ask for.
#[derive(Clone, Debug)]
pub struct StripeOptions {
    /// The relays, `mover://HOST[:PORT]` each.
    pub via: Vec<String>,
    /// `--direct`: the receiver takes blocks in the striping phase too.
    pub direct: bool,
    /// `--stripe`.
    pub mode: StripeMode,
    /// Collect while striping goes on (false: `--no-overlap`).
    pub overlap: bool,
    /// `--detach`: return once striping is done.
    pub detach: bool,
    /// Plaintext bytes per block.
    pub block_bytes: u32,
    /// `--via auto`: the candidates of `--relays FILE`, chosen by RTT after the receiver answered.
    pub auto: Option<AutoChoice>,
}

/// `--via auto --relays FILE --max-rtt-sender MS --max-rtt-receiver MS --max-relays N`.
#[derive(Clone, Debug, Default)]
pub struct AutoChoice {
    /// The candidates, `mover://HOST[:PORT]` each.
    pub candidates: Vec<String>,
    /// The sender's constraint, milliseconds.
    pub max_rtt_sender_ms: Option<f64>,
    /// The receiver's constraint, milliseconds.
    pub max_rtt_receiver_ms: Option<f64>,
    /// Most relays to use.
    pub max_relays: usize,
}

impl Default for StripeOptions {
    fn default() -> StripeOptions {
        StripeOptions {
            via: Vec::new(),
            direct: false,
            mode: StripeMode::Fcfs,
            overlap: true,
            detach: false,
            block_bytes: DEFAULT_BLOCK_BYTES,
            auto: None,
        }
    }
}

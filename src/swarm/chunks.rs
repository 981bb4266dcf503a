//! A large swarm's peers of one role: a sorted sequence cut into chunks of bounded size.
//!
//! One sorted vector makes adding a peer cost a move of everything after it: 7 ms in a
//! 10 M-peer swarm, under the shard lock. Here the sequence is cut into chunks of at most
//! [`CHUNK`] slots (each allocated once at that capacity), so a join or a leave moves at most one
//! chunk's slots, a lookup is two binary searches, and only a chunk split or merge (one in every
//! [`MIN_FILL`] changes or more) moves the directory of chunk pointers. Every chunk but a lone one
//! holds at least [`MIN_FILL`] slots, which keeps memory near the flat layout and lets
//! [`sample`], past [`WALK_MAX`] chunks, draw uniformly over the chunks' capacity in constant
//! expected time.
//!
//! Owns the chunk layout and nothing else: roles, stamps and counts belong to
//! [`super::peer_list`].

use rand_core::Rng;

use super::peer_list::Slot;
use super::select;

/// Slots per chunk: 8 KB of IPv4 peers, 20 KB of IPv6 peers. Small enough that moving part of a
/// chunk costs less than the rest of an announce, large enough that the directory stays short and
/// a walk over it (see [`sample_walking`]) quick. Measured against 512 and 2,048 with
/// `cargo bench -p edgetracker-native --bench swarm`.
pub const CHUNK: usize = 1024;
/// Fewest slots a chunk keeps when its run has others.
pub const MIN_FILL: usize = CHUNK / 4;

/// Most chunks [`sample`] walks in order (a pass over their lengths, cheaper than rejected
/// draws up to about this many); beyond, it draws at random positions.
pub const WALK_MAX: usize = 1024;

/// A position in a run: chunk index and offset in the chunk.
pub type Pos = (u32, u32);

#[derive(Clone, Debug)]
pub struct Run<const N: usize, X> {
    chunks: Vec<Vec<Slot<N, X>>>,
    /// `bounds[i]`: no address in chunks `0..=i` reaches it, none in the later ones is below it.
    /// Kept apart from the chunks so a lookup's binary search reads one small array rather than
    /// a pointer per step; it changes only when chunks split, merge or even out.
    bounds: Vec<[u8; N]>,
    len: usize,
}

impl<const N: usize, X> Default for Run<N, X> {
    fn default() -> Self {
        Run {
            chunks: Vec::new(),
            bounds: Vec::new(),
            len: 0,
        }
    }
}

fn new_chunk<T>() -> Vec<T> {
    Vec::with_capacity(CHUNK)
}

impl<const N: usize, X: Copy> Run<N, X> {
    /// A run holding `sorted`, in chunks at most three-quarters full (room for the next joins)
    /// and of even sizes (so that none starts below [`MIN_FILL`]).
    pub fn from_sorted(sorted: &[Slot<N, X>]) -> Self {
        let n = sorted.len();
        let k = n.div_ceil(CHUNK - MIN_FILL);
        let chunks: Vec<_> = (0..k)
            .map(|i| {
                let mut c = new_chunk();
                c.extend_from_slice(&sorted[i * n / k..(i + 1) * n / k]);
                c
            })
            .collect();
        let bounds = chunks[1.min(k)..].iter().map(|c| c[0].addr).collect();
        Run {
            chunks,
            bounds,
            len: n,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn chunks(&self) -> &[Vec<Slot<N, X>>] {
        &self.chunks
    }

    #[cfg(test)]
    pub fn bounds(&self) -> &[[u8; N]] {
        &self.bounds
    }

    /// Appends every slot, in order, to `out`.
    pub fn append_to(&self, out: &mut Vec<Slot<N, X>>) {
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
    }

    /// Where `addr` is, or where it would be inserted.
    pub fn find(&self, addr: &[u8; N]) -> Result<Pos, Pos> {
        if self.chunks.is_empty() {
            return Err((0, 0));
        }
        let c = self.bounds.partition_point(|b| b <= addr);
        match self.chunks[c].binary_search_by(|s| s.addr.cmp(addr)) {
            Ok(o) => Ok((c as u32, o as u32)),
            Err(o) => Err((c as u32, o as u32)),
        }
    }

    pub fn get(&self, (c, o): Pos) -> &Slot<N, X> {
        &self.chunks[c as usize][o as usize]
    }

    pub fn get_mut(&mut self, (c, o): Pos) -> &mut Slot<N, X> {
        &mut self.chunks[c as usize][o as usize]
    }

    /// Inserts `slot` at `at` (a position [`Run::find`] gave for its address); returns where it
    /// ended up.
    pub fn insert(&mut self, (c, o): Pos, slot: Slot<N, X>) -> Pos {
        self.len += 1;
        if self.chunks.is_empty() {
            let mut ch = new_chunk();
            ch.push(slot);
            self.chunks.push(ch);
            return (0, 0);
        }
        let (mut c, mut o) = (c as usize, o as usize);
        if self.chunks[c].len() == CHUNK {
            // Split where the slot goes, within bounds that leave both halves above MIN_FILL:
            // peers joining in address order then leave chunks three-quarters full, not half.
            let at = o.clamp(MIN_FILL, CHUNK - MIN_FILL);
            let mut tail = new_chunk();
            tail.extend(self.chunks[c].drain(at..));
            self.bounds.insert(c, tail[0].addr);
            self.chunks.insert(c + 1, tail);
            if o > at {
                c += 1;
                o -= at;
            }
        }
        self.chunks[c].insert(o, slot);
        (c as u32, o as u32)
    }

    pub fn remove(&mut self, (c, o): Pos) {
        let c = c as usize;
        self.chunks[c].remove(o as usize);
        self.len -= 1;
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
            if !self.bounds.is_empty() {
                // The neighbour's range takes over the emptied one.
                self.bounds.remove(c.saturating_sub(1));
            }
        } else if self.chunks[c].len() < MIN_FILL && self.chunks.len() > 1 {
            let (a, b) = if c + 1 < self.chunks.len() {
                (c, c + 1)
            } else {
                (c - 1, c)
            };
            self.rebalance(a, b);
        }
    }

    /// Restores the fill of neighbours `a` and `b = a + 1`, one of which is short.
    fn rebalance(&mut self, a: usize, b: usize) {
        let (left, right) = self.chunks.split_at_mut(b);
        if even_out(&mut left[a], &mut right[0]) {
            self.chunks.remove(b);
            self.bounds.remove(a);
        } else {
            self.bounds[a] = self.chunks[b][0].addr;
        }
    }

    /// Keeps the slots `keep` accepts, in order, and restores every chunk's fill.
    pub fn retain(&mut self, mut keep: impl FnMut(&Slot<N, X>) -> bool) {
        let mut kept: Vec<Vec<Slot<N, X>>> = Vec::with_capacity(self.chunks.len());
        for mut ch in std::mem::take(&mut self.chunks) {
            ch.retain(&mut keep);
            if ch.is_empty() {
                continue;
            }
            kept.push(ch);
            if let [.., left, right] = &mut kept[..]
                && (left.len() < MIN_FILL || right.len() < MIN_FILL)
                && even_out(left, right)
            {
                kept.pop();
            }
        }
        self.len = kept.iter().map(Vec::len).sum();
        if kept.capacity() > 2 * kept.len() + 4 {
            kept.shrink_to_fit();
        }
        self.bounds.clear();
        self.bounds.extend(kept.iter().skip(1).map(|c| c[0].addr));
        self.bounds.shrink_to_fit();
        self.chunks = kept;
    }

    /// Slots whose address starts with `prefix`.
    pub fn count_prefix(&self, prefix: &[u8]) -> usize {
        let k = prefix.len();
        let mut c = self.bounds.partition_point(|b| &b[..k] < prefix);
        let mut n = 0;
        while let Some(ch) = self.chunks.get(c) {
            let start = ch.partition_point(|s| &s.addr[..k] < prefix);
            let end = ch.partition_point(|s| &s.addr[..k] <= prefix);
            n += end - start;
            if end < ch.len() {
                break;
            }
            c += 1;
        }
        n
    }
}

/// Merges `right` into `left` if both fit in one chunk (returns true, `right` left empty), else
/// moves slots from the fuller to the other until they hold about as many.
fn even_out<T: Copy>(left: &mut Vec<T>, right: &mut Vec<T>) -> bool {
    let (l, r) = (left.len(), right.len());
    if l + r <= CHUNK {
        left.append(right);
        true
    } else {
        if l < r {
            left.extend(right.drain(..(r - l) / 2));
        } else {
            right.splice(0..0, left.drain(l - (l - r) / 2..));
        }
        false
    }
}

/// A uniform draw from `0..n` for spans past `u32` (the candidates' chunk capacity).
fn below(rng: &mut impl Rng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// Calls `emit` with up to `want` distinct slots drawn uniformly at random from the runs
/// `candidates` (in order), never the one at `exclude` (run index, position): all of them if
/// there are no more than `want`.
///
/// Up to [`WALK_MAX`] chunks, [`sample_walking`]; beyond, [`sample_drawing`], whose cost does not
/// grow with the swarm.
pub fn sample<'a, const N: usize, X: Copy>(
    candidates: &[&'a Run<N, X>],
    exclude: Option<(usize, Pos)>,
    want: usize,
    rng: &mut impl Rng,
    emit: impl FnMut(&'a Slot<N, X>),
) {
    let chunks: usize = candidates.iter().map(|r| r.chunks.len()).sum();
    if chunks <= WALK_MAX.max(2 * want + 2) {
        sample_walking(candidates, exclude, want, rng, emit)
    } else {
        sample_drawing(candidates, exclude, want, rng, emit)
    }
}

/// [`sample`] by numbering the candidates in order and taking [`select::indices`]' stratified
/// sample, found in one pass over the chunks' lengths.
pub fn sample_walking<'a, const N: usize, X: Copy>(
    candidates: &[&'a Run<N, X>],
    exclude: Option<(usize, Pos)>,
    want: usize,
    rng: &mut impl Rng,
    mut emit: impl FnMut(&'a Slot<N, X>),
) {
    let total: usize = candidates.iter().map(|r| r.len).sum();
    let excluded_index = exclude
        .filter(|&(r, _)| r < candidates.len())
        .map(|(r, (c, o))| {
            candidates[..r].iter().map(|run| run.len).sum::<usize>()
                + candidates[r].chunks[..c as usize]
                    .iter()
                    .map(Vec::len)
                    .sum::<usize>()
                + o as usize
        });
    // Indices come in increasing order, so one pass over the chunks serves them all.
    let mut picks = select::indices(total, excluded_index, want, rng).peekable();
    let mut base = 0;
    for chunk in candidates.iter().flat_map(|run| &run.chunks) {
        if picks.peek().is_none() {
            break;
        }
        let end = base + chunk.len();
        while let Some(i) = picks.next_if(|&i| i < end) {
            emit(&chunk[i - base]);
        }
        base = end;
    }
}

/// [`sample`] by drawing positions over the chunks' whole capacity and keeping those that hold
/// a slot (and were not drawn before): every slot is equally likely, and since every chunk but a
/// lone one is at least a quarter full, a draw hits about as often whatever the swarm's size.
/// Meant for many chunks: with few, their slots may number less than `want`, and the draws stop
/// after a bounded number of misses.
pub fn sample_drawing<'a, const N: usize, X: Copy>(
    candidates: &[&'a Run<N, X>],
    exclude: Option<(usize, Pos)>,
    want: usize,
    rng: &mut impl Rng,
    mut emit: impl FnMut(&'a Slot<N, X>),
) {
    let chunks: usize = candidates.iter().map(|r| r.chunks.len()).sum();
    let span = (chunks * CHUNK) as u64;
    if span == 0 {
        return;
    }
    let mut picked: Vec<u64> = Vec::with_capacity(want);
    // A 4096-bit filter in front of the picked list, so that checking for repeats stays cheap
    // for a large `want`.
    let mut seen = [0u64; 64];
    let mut tries = 16 * want + 64;
    while picked.len() < want && tries > 0 {
        tries -= 1;
        let p = below(rng, span);
        let (mut c, o) = ((p / CHUNK as u64) as usize, (p % CHUNK as u64) as usize);
        let mut r = 0;
        while c >= candidates[r].chunks.len() {
            c -= candidates[r].chunks.len();
            r += 1;
        }
        let Some(slot) = candidates[r].chunks[c].get(o) else {
            continue;
        };
        if exclude == Some((r, (c as u32, o as u32))) {
            continue;
        }
        let bit = (p.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize;
        if seen[bit / 64] & (1 << (bit % 64)) != 0 && picked.contains(&p) {
            continue;
        }
        seen[bit / 64] |= 1 << (bit % 64);
        picked.push(p);
        emit(slot);
    }
}

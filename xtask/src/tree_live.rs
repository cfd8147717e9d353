//! The live side of `cargo xtask tree`: watches of Fermats, Tuples and
//! Numbers in one namespace, and a terminal view of the tree that `tree.rs`
//! lays out (or one plain snapshot with `--once`).

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use tokio::sync::mpsc;

use crate::catalogue;
use crate::lang::Language;
use crate::say;
use crate::tree::{self, Kind, Mark, Object, Tone};

/// How long a created, changed or deleted object stays highlighted.
pub const HIGHLIGHT: Duration = Duration::from_secs(5);

/// What `cargo xtask tree` was asked for.
pub struct Options {
    pub namespace: Option<String>,
    pub once: bool,
    pub wait_settled: bool,
    pub timeout: Duration,
}

/// What the watches have shown so far.
#[derive(Default)]
struct State {
    objects: HashMap<String, Object>,
    /// Objects of a kind seen during a (re)list, until it ends.
    listing: HashMap<Kind, Vec<Object>>,
    listed: HashSet<Kind>,
    marks: HashMap<String, (Mark, Instant)>,
    /// Deleted objects, shown until their highlight ends.
    ghosts: HashMap<String, Object>,
    /// The last watch error, shown until the watch works again.
    trouble: Option<String>,
}

impl State {
    fn mark(&mut self, uid: &str, mark: Mark, kind: Kind) {
        // Objects that were there when the tree started are not news.
        if !self.listed.contains(&kind) {
            return;
        }
        // A new object getting its status is still news as a new object.
        let mark = match self.marks.get(uid) {
            Some((Mark::Created, _)) if mark == Mark::Changed => Mark::Created,
            _ => mark,
        };
        self.marks.insert(uid.to_string(), (mark, Instant::now()));
    }

    fn upsert(&mut self, object: Object) {
        let kind = object.kind;
        match self.objects.get(&object.uid) {
            Some(old) if *old == object => {}
            Some(_) => self.mark(&object.uid, Mark::Changed, kind),
            None => self.mark(&object.uid, Mark::Created, kind),
        }
        self.ghosts.remove(&object.uid);
        self.objects.insert(object.uid.clone(), object);
    }

    fn remove(&mut self, uid: &str) {
        if let Some(object) = self.objects.remove(uid)
            && self.listed.contains(&object.kind)
        {
            self.marks.insert(uid.to_string(), (Mark::Deleted, Instant::now()));
            self.ghosts.insert(uid.to_string(), object);
        }
    }

    fn apply(&mut self, kind: Kind, event: watcher::Event<DynamicObject>) {
        self.trouble = None;
        match event {
            watcher::Event::Apply(object) => self.upsert(Object::from_dynamic(kind, &object)),
            watcher::Event::Delete(object) => self.remove(&object.uid().unwrap_or_default()),
            watcher::Event::Init => {
                self.listing.insert(kind, Vec::new());
            }
            watcher::Event::InitApply(object) => {
                self.listing
                    .entry(kind)
                    .or_default()
                    .push(Object::from_dynamic(kind, &object));
            }
            watcher::Event::InitDone => {
                let listed = self.listing.remove(&kind).unwrap_or_default();
                let uids: HashSet<String> = listed.iter().map(|object| object.uid.clone()).collect();
                let gone: Vec<String> = (self.objects.values())
                    .filter(|object| object.kind == kind && !uids.contains(&object.uid))
                    .map(|object| object.uid.clone())
                    .collect();
                for uid in gone {
                    self.remove(&uid);
                }
                for object in listed {
                    self.upsert(object);
                }
                self.listed.insert(kind);
            }
        }
    }

    /// Ends highlights that are over; whether anything changed.
    fn expire(&mut self) -> bool {
        let before = self.marks.len();
        self.marks.retain(|_, (_, since)| since.elapsed() < HIGHLIGHT);
        let marks = &self.marks;
        self.ghosts.retain(|uid, _| marks.contains_key(uid));
        self.marks.len() != before
    }

    /// The objects there, and those deleted a moment ago.
    fn shown(&self) -> Vec<&Object> {
        self.objects.values().chain(self.ghosts.values()).collect()
    }

    fn live(&self) -> Vec<&Object> {
        self.objects.values().collect()
    }
}

/// The resource of one of the workshop's kinds.
fn resource(kind: Kind) -> ApiResource {
    let gvk = GroupVersionKind::gvk(catalogue::GROUP, catalogue::VERSION, kind.name());
    ApiResource::from_gvk_with_plural(&gvk, kind.plural())
}

/// Connects with the current kubeconfig context (or, inside a Pod, its account).
async fn connect() -> Result<Client> {
    let config = match kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default()).await {
        Ok(config) => config,
        Err(kubeconfig) => kube::Config::incluster().map_err(|_| {
            // The YAML parser quotes the file over several lines: one line is enough.
            let why: Vec<String> = kubeconfig.to_string().lines().map(|line| line.trim().to_string()).collect();
            let why = why.join(" ");
            anyhow::anyhow!(
                "{}",
                say!(
                    "cannot read the kubeconfig ({why}): start the local cluster with `cargo xtask up` and export the KUBECONFIG it prints",
                    "kubeconfig を読めません（{why}）。`cargo xtask up` でローカルのクラスターを起動し、表示される KUBECONFIG を export してください"
                )
            )
        })?,
    };
    Client::try_from(config).map_err(|err| {
        anyhow::anyhow!(
            "{}",
            say!(
                "cannot use the kubeconfig's cluster: {err}",
                "kubeconfig のクラスターを使えません: {err}"
            )
        )
    })
}

/// Which of the workshop's kinds the cluster serves.
pub async fn installed_kinds(client: &Client, namespace: &str) -> Result<Vec<Kind>> {
    let mut installed = Vec::new();
    for kind in Kind::ALL {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource(kind));
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => installed.push(kind),
            // An unknown resource: "404 page not found", not a NotFound status.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => bail!(
                "{}",
                say!(
                    "the cluster of the current kubeconfig context does not answer ({err}): is it running? (`cargo xtask up` starts the local one)",
                    "現在の kubeconfig コンテキストのクラスターが応答しません（{err}）。動いていますか？（ローカルのものは `cargo xtask up` で起動します）"
                )
            ),
        }
    }
    if installed.is_empty() {
        bail!(
            "{}",
            say!(
                "this cluster serves none of the workshop's kinds: install a stage's CRDs first, for example `cargo run --bin step04_fermat -- crd | kubectl apply --server-side -f -`",
                "このクラスターにはワークショップのリソースの種類がどれもありません。先に段階の CRD をインストールしてください。たとえば `cargo run --bin step04_fermat -- crd | kubectl apply --server-side -f -`"
            )
        );
    }
    Ok(installed)
}

/// Starts one watch per installed kind; their events arrive on the receiver.
fn watch(
    client: &Client,
    namespace: &str,
    installed: &[Kind],
) -> mpsc::Receiver<(Kind, Result<watcher::Event<DynamicObject>, watcher::Error>)> {
    let (sender, receiver) = mpsc::channel(1024);
    for &kind in installed {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource(kind));
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = events.next().await {
                if sender.send((kind, event)).await.is_err() {
                    return;
                }
            }
        });
    }
    receiver
}

/// `cargo xtask tree`.
pub async fn run(options: Options) -> Result<()> {
    if !options.once && !std::io::stdout().is_terminal() {
        bail!(
            "{}",
            say!(
                "the live tree needs a terminal: for a snapshot as text, add --once",
                "リアルタイムのツリーには端末が必要です。その時点のツリーをテキストで見るときは --once を付けます"
            )
        );
    }
    let client = connect().await?;
    let namespace = (options.namespace.clone()).unwrap_or_else(|| client.default_namespace().to_string());
    if options.once {
        let snapshot = snapshot(&client, &namespace, options.wait_settled, options.timeout, true).await?;
        // A reader that stops early (`| head`) is not an error.
        let mut out = std::io::stdout().lock();
        return match out.write_all(snapshot.text(Language::of_reader()).as_bytes()) {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            written => Ok(written?),
        };
    }
    let installed = installed_kinds(&client, &namespace).await?;
    let mut events = watch(&client, &namespace, &installed);
    let mut state = State::default();
    let mut terminal = ratatui::init();
    let result = view(&mut terminal, &namespace, &installed, &mut events, &mut state).await;
    ratatui::restore();
    result
}

/// The tree of a namespace at one moment, to print as text.
pub struct Snapshot {
    namespace: String,
    objects: Vec<Object>,
    installed: Vec<Kind>,
}

impl Snapshot {
    /// The objects of the namespace at that moment.
    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    /// The tree as plain text in `language` (see [`tree::plain`]).
    pub fn text(&self, language: Language) -> String {
        let objects: Vec<&Object> = self.objects.iter().collect();
        tree::plain(language, &self.namespace, &objects, &self.installed)
    }
}

/// `--once`: the tree, once every kind is listed and, with `wait_settled`,
/// once nothing is left to do (`tree::unsettled`). Gives up after `timeout`
/// with the tree as it stands and the reason. With `tell_progress`, says on
/// stderr what it still waits for every [`PROGRESS_EVERY`], so that a
/// person does not take the wait for a hang.
pub async fn snapshot(
    client: &Client,
    namespace: &str,
    wait_settled: bool,
    timeout: Duration,
    tell_progress: bool,
) -> Result<Snapshot> {
    let mut tell = |seconds: u64, why: &str| {
        eprintln!(
            "{}",
            say!(
                "still waiting after {seconds} s: {why}",
                "{seconds} 秒待っています: {why}"
            )
        );
    };
    let progress: Option<&mut Progress<'_>> = if tell_progress { Some(&mut tell) } else { None };
    snapshot_telling(client, namespace, wait_settled, timeout, progress).await
}

/// What [`snapshot_telling`] hands what it still waits for, and since how many seconds.
pub type Progress<'a> = dyn FnMut(u64, &str) + Send + 'a;

/// [`snapshot`], which hands `progress` (when given) what it still waits
/// for, and since how many seconds, every [`PROGRESS_EVERY`].
pub async fn snapshot_telling(
    client: &Client,
    namespace: &str,
    wait_settled: bool,
    timeout: Duration,
    mut progress: Option<&mut Progress<'_>>,
) -> Result<Snapshot> {
    let tell_progress = progress.is_some();
    let language = Language::of_reader();
    let installed = installed_kinds(client, namespace).await?;
    let mut events = watch(client, namespace, &installed);
    let mut state = State::default();
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut next_tell = started + PROGRESS_EVERY;
    let ready = |state: &State| {
        installed.iter().all(|kind| state.listed.contains(kind))
            && (!wait_settled || tree::unsettled(language, &state.live()).is_none())
    };
    let waiting_for = |state: &State| match (&state.trouble, tree::unsettled(language, &state.live())) {
        (Some(trouble), _) => trouble.clone(),
        (None, Some(why)) => why,
        (None, None) => say!("the first list has not arrived", "最初の list がまだ届いていません"),
    };
    while !ready(&state) {
        let wake = if tell_progress {
            next_tell.min(deadline)
        } else {
            deadline
        };
        match tokio::time::timeout_at(wake, events.recv()).await {
            Ok(Some((kind, Ok(event)))) => state.apply(kind, event),
            Ok(Some((kind, Err(err)))) => state.trouble = Some(watch_fails(kind, &err, false)),
            Ok(None) => bail!("{}", say!("the watches ended", "watch が終了しました")),
            Err(_) if tokio::time::Instant::now() < deadline => {
                let seconds = started.elapsed().as_secs();
                let why = waiting_for(&state);
                if let Some(progress) = progress.as_mut() {
                    progress(seconds, &why);
                }
                next_tell += PROGRESS_EVERY;
            }
            Err(_) => {
                let why = waiting_for(&state);
                let seconds = timeout.as_secs();
                bail!(
                    "{}{}",
                    tree::plain(language, namespace, &state.live(), &installed),
                    say!(
                        "not settled after {seconds} s: {why}; is the controller running? (or wait longer with --timeout SECONDS)",
                        "{seconds} 秒たっても落ち着きません: {why}。コントローラーは動いていますか？（--timeout SECONDS でもっと長く待てます）"
                    )
                );
            }
        }
    }
    Ok(Snapshot {
        namespace: namespace.to_string(),
        objects: state.objects.into_values().collect(),
        installed,
    })
}

/// How often `--once --wait-settled` says what it still waits for.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The line that tells a watch fails, and whether it is retried.
fn watch_fails(kind: Kind, err: &impl std::fmt::Display, retrying: bool) -> String {
    let plural = kind.plural();
    match retrying {
        false => say!(
            "the watch of {plural} fails: {err}",
            "{plural} の watch が失敗しています: {err}"
        ),
        true => say!(
            "the watch of {plural} fails: {err}; retrying",
            "{plural} の watch が失敗しています: {err}。やり直しています"
        ),
    }
}

fn style(tone: Tone) -> Style {
    let style = Style::new();
    match tone {
        Tone::Plain => style,
        Tone::Dim => style.fg(Color::DarkGray),
        Tone::Name => style.add_modifier(Modifier::BOLD),
        Tone::True => style.fg(Color::Green),
        Tone::False => style.fg(Color::Red),
        Tone::Pending => style.fg(Color::Yellow),
        Tone::Warning => style.fg(Color::Magenta),
        Tone::Created => style.fg(Color::Black).bg(Color::Green),
        Tone::Changed => style.fg(Color::Black).bg(Color::Yellow),
        Tone::Deleted => style.fg(Color::Red).add_modifier(Modifier::CROSSED_OUT),
    }
}

/// Where the reader is in the tree.
#[derive(Default)]
struct Cursor {
    /// The selected object, so that it stays selected as rows come and go.
    selected: Option<String>,
    /// The first row on screen.
    top: usize,
    collapsed: HashSet<String>,
}

/// The interactive view, until q, Esc or Ctrl-C.
async fn view(
    terminal: &mut ratatui::DefaultTerminal,
    namespace: &str,
    installed: &[Kind],
    events: &mut mpsc::Receiver<(Kind, Result<watcher::Event<DynamicObject>, watcher::Error>)>,
    state: &mut State,
) -> Result<()> {
    let mut keys = read_keys();
    let mut cursor = Cursor::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut dirty = true;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    loop {
        // At most five frames a second while objects pour in; keys draw at once.
        if dirty && last_draw.elapsed() >= Duration::from_millis(200) {
            draw(terminal, namespace, installed, state, &mut cursor)?;
            last_draw = Instant::now();
            dirty = false;
        }
        tokio::select! {
            Some((kind, event)) = events.recv() => {
                match event {
                    Ok(event) => state.apply(kind, event),
                    Err(err) => state.trouble = Some(watch_fails(kind, &err, true)),
                }
                dirty = true;
            }
            Some(input) = keys.recv() => {
                match input {
                    Event::Key(key) if key.kind != KeyEventKind::Release => {
                        let quit = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL));
                        if quit {
                            return Ok(());
                        }
                        steer(key.code, state, &mut cursor, terminal.size()?.height);
                    }
                    _ => {}
                }
                // A key or a resize: draw at once.
                last_draw = Instant::now() - Duration::from_secs(1);
                dirty = true;
            }
            _ = tick.tick() => dirty |= state.expire(),
        }
    }
}

/// Keys and resizes, from a thread that blocks on the terminal; it stops
/// once the receiver is dropped.
fn read_keys() -> mpsc::Receiver<Event> {
    let (key_sender, keys) = mpsc::channel(64);
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {
                    let Ok(input) = event::read() else { return };
                    if key_sender.blocking_send(input).is_err() {
                        return;
                    }
                }
                Ok(false) if key_sender.is_closed() => return,
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    keys
}

/// Moves the cursor or folds the tree for one key.
fn steer(code: KeyCode, state: &State, cursor: &mut Cursor, height: u16) {
    let rows = tree::rows_in(
        Language::of_reader(),
        &state.shown(),
        &|_| None,
        &cursor.collapsed,
        0..0,
    );
    if rows.is_empty() {
        return;
    }
    let page = usize::from(height.saturating_sub(3)).max(1);
    let at = (cursor.selected.as_ref())
        .and_then(|uid| rows.iter().position(|row| row.uid == *uid))
        .unwrap_or(0);
    let last = rows.len() - 1;
    let row = &rows[at];
    let to = match code {
        KeyCode::Up | KeyCode::Char('k') => at.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => (at + 1).min(last),
        KeyCode::PageUp => at.saturating_sub(page),
        KeyCode::PageDown => (at + page).min(last),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::End | KeyCode::Char('G') => last,
        KeyCode::Enter | KeyCode::Char(' ') => {
            if !cursor.collapsed.remove(&row.uid) && row.below > 0 {
                cursor.collapsed.insert(row.uid.clone());
            }
            at
        }
        KeyCode::Left | KeyCode::Char('h') => {
            if row.below > 0 && !row.collapsed {
                cursor.collapsed.insert(row.uid.clone());
                at
            } else {
                // Up to the parent.
                (0..at).rev().find(|&i| rows[i].depth < row.depth).unwrap_or(at)
            }
        }
        KeyCode::Right | KeyCode::Char('l') => {
            cursor.collapsed.remove(&row.uid);
            at
        }
        KeyCode::Char('c') => {
            // Fold every parent; the cursor goes to its top-level object.
            cursor.collapsed = state.objects.keys().cloned().collect();
            (0..=at).rev().find(|&i| rows[i].depth == 0).unwrap_or(0)
        }
        KeyCode::Char('e') => {
            cursor.collapsed.clear();
            at
        }
        _ => at,
    };
    cursor.selected = Some(rows[to].uid.clone());
}

/// Draws the header, the rows on screen with the selected one reversed, and
/// the help line (or the watch's trouble) at the bottom.
fn draw(
    terminal: &mut ratatui::DefaultTerminal,
    namespace: &str,
    installed: &[Kind],
    state: &State,
    cursor: &mut Cursor,
) -> Result<()> {
    let language = Language::of_reader();
    let header = tree::header(language, namespace, &state.live(), installed);
    let height = usize::from(terminal.size()?.height.saturating_sub(2)).max(1);
    let (rows, at) = rows_on_screen(language, state, cursor, height);
    terminal
        .draw(|frame| {
            let [top, body, bottom] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)])
                    .areas(frame.area());
            let height = usize::from(body.height);
            let lines: Vec<Line> = (rows.iter().enumerate().skip(cursor.top).take(height))
                .map(|(index, row)| {
                    let spans: Vec<Span> = (row.spans.iter())
                        .map(|(text, tone)| Span::styled(text.clone(), style(*tone)))
                        .collect();
                    let line = Line::from(spans);
                    if index == at {
                        line.style(Style::new().add_modifier(Modifier::REVERSED))
                    } else {
                        line
                    }
                })
                .collect();
            frame.render_widget(
                Paragraph::new(header.clone()).style(Style::new().add_modifier(Modifier::BOLD)),
                top,
            );
            frame.render_widget(Paragraph::new(lines), body);
            frame.render_widget(Paragraph::new(help(state, at, rows.len())), bottom);
        })
        .context("cannot draw in this terminal")?;
    Ok(())
}

/// The rows of the tree, with text for the `height` of them on screen, and
/// the index of the selected one. Scrolls `cursor` so that the selected row
/// is on screen.
fn rows_on_screen(language: Language, state: &State, cursor: &mut Cursor, height: usize) -> (Vec<tree::Row>, usize) {
    let shown = state.shown();
    let marks = |uid: &str| state.marks.get(uid).map(|(mark, _)| *mark);
    // Text only for the rows on screen; a second pass when the selected row
    // has moved off it.
    let mut rows = tree::rows_in(
        language,
        &shown,
        &marks,
        &cursor.collapsed,
        cursor.top..cursor.top + height,
    );
    let at = (cursor.selected.as_ref())
        .and_then(|uid| rows.iter().position(|row| row.uid == *uid))
        .unwrap_or(0);
    let top = if at < cursor.top {
        at
    } else if at >= cursor.top + height {
        at + 1 - height
    } else {
        cursor.top
    }
    .min(rows.len().saturating_sub(height));
    if top != cursor.top {
        cursor.top = top;
        rows = tree::rows_in(language, &shown, &marks, &cursor.collapsed, top..top + height);
    }
    (rows, at)
}

/// The bottom line: the watch's trouble if there is one, or else where the
/// selected row `at` is among `count` and the keys.
fn help(state: &State, at: usize, count: usize) -> Line<'static> {
    match &state.trouble {
        Some(trouble) => Line::styled(trouble.clone(), style(Tone::Warning)),
        None => {
            let at = (at + 1).min(count);
            Line::styled(
                say!(
                    "{at}/{count} · ↑↓ PgUp PgDn Home End: move · Enter: fold · ←→: fold, unfold · c/e: fold/unfold all · q: quit",
                    "{at}/{count} · ↑↓ PgUp PgDn Home End: 移動 · Enter: 畳む · ←→: 畳む・開く · c/e: すべて畳む・開く · q: 終了"
                ),
                style(Tone::Dim),
            )
        }
    }
}

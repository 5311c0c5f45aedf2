//! The TypeScript declarations generated from the protocol's types.

use ts_rs::TS;

use super::*;

/// The TypeScript declarations of every type above, as checked in at
/// `server/web/src/protocol.gen.ts`.
pub fn typescript() -> String {
    let decls = [
        SessionState::decl(),
        Mode::decl(),
        Tier::decl(),
        Decision::decl(),
        Outcome::decl(),
        DecidedBy::decl(),
        BlockType::decl(),
        DeltaType::decl(),
        Worktree::decl(),
        Worktrees::decl(),
        SessionSummary::decl(),
        QuestionOption::decl(),
        Question::decl(),
        ReconnectReport::decl(),
        ServerEvent::decl(),
        ServerFrame::decl(),
        ReconnectEntry::decl(),
        ClientFrame::decl(),
        SessionList::decl(),
        SessionPatch::decl(),
        RepoInfo::decl(),
        EventPage::decl(),
    ];
    let mut out = String::from(
        "// Generated from server/protocol (crate mitzo-protocol); do not edit.\n\
         // Regenerate: MITZO_UPDATE_PROTOCOL_TS=1 cargo test -p mitzo-protocol\n\n",
    );
    for d in decls {
        out.push_str("export ");
        out.push_str(&d);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

// A session's work as the owner reviews it: the commits on its branch, the
// files it changes and the diff against the main checkout's branch, and a
// Merge button. Everything shown comes from the agent (subjects, names,
// paths, file contents), so it is rendered as text nodes only.
import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "../api";
import { type Merged, type Review as ReviewAnswer, routes } from "../protocol";
import { Diff, nav } from "./common";

export function Review({ id }: { id: string }) {
  const [review, setReview] = useState<ReviewAnswer | null>(null);
  const [error, setError] = useState("");
  const [mergeError, setMergeError] = useState("");
  const [merged, setMerged] = useState<Merged | null>(null);
  const [busy, setBusy] = useState(false);

  const load = () => {
    setError("");
    return api<ReviewAnswer>(routes.review(id))
      .then(setReview)
      .catch((e) => setError(String(e.message || e)));
  };
  useEffect(() => {
    setReview(null);
    setMerged(null);
    setMergeError("");
    void load();
  }, [id]);

  const merge = async () => {
    setBusy(true);
    setMergeError("");
    try {
      setMerged(await api<Merged>(routes.merge(id), { method: "POST", body: {} }));
      await load();
    } catch (e) {
      setMergeError(e instanceof ApiError && e.status === 409 ? `Not merged: ${e.message}` : String((e as Error).message));
    } finally {
      setBusy(false);
    }
  };

  const r = review;
  return (
    <section class="review" aria-label="Review">
      <header class="chat-head">
        <button type="button" class="back" aria-label="Back to the session" onClick={() => nav(`/s/${encodeURIComponent(id)}`)}>
          ‹
        </button>
        <div class="chat-title">
          <h1>Review</h1>
          {r && (
            <span class="state idle">
              {r.branch} → {r.target}
            </span>
          )}
        </div>
        <button type="button" class="primary" disabled={!r || r.upToDate || busy} onClick={merge}>
          {busy ? "Merging…" : r ? `Merge into ${r.target}` : "Merge"}
        </button>
      </header>
      {error && (
        <p class="msg error" role="alert">
          {error}
        </p>
      )}
      {mergeError && (
        <p class="msg error merge-refused" role="alert">
          {mergeError}
        </p>
      )}
      {merged && (
        <p class="notice" role="status">
          Merged {merged.branch} into {merged.target}: <code>{merged.commit.slice(0, 12)}</code>
        </p>
      )}
      {!r && !error && <p class="empty" aria-busy="true">Loading…</p>}
      {r && (
        <div class="review-body">
          <p class="review-summary">
            {r.commits.length} commit{r.commits.length === 1 ? "" : "s"}, {r.files.length} file{r.files.length === 1 ? "" : "s"} changed, +{r.added} −{r.deleted}
            {r.upToDate && <> · nothing to merge: {r.target} has all of it</>}
            {!r.fetched && <> · its checkout is gone: the branch as last fetched</>}
          </p>
          <h2>Commits</h2>
          {r.commits.length === 0 ? (
            <p class="empty">No commits that {r.target} lacks.</p>
          ) : (
            <ul class="review-commits">
              {r.commits.map((c) => (
                <li key={c.sha}>
                  <code>{c.sha.slice(0, 12)}</code> <bdi class="subject">{c.subject}</bdi>
                  <span class="who">
                    <bdi>{c.author}</bdi> · {c.date}
                  </span>
                </li>
              ))}
              {r.commitsTruncated && <li class="empty">More commits, not listed.</li>}
            </ul>
          )}
          <h2>Files</h2>
          <ul class="review-files">
            {r.files.map((f) => (
              <li key={f.path}>
                <span class="counts">{f.binary ? "binary" : `+${f.added} −${f.deleted}`}</span> <bdi>{f.path}</bdi>
              </li>
            ))}
            {r.filesTruncated && <li class="empty">More files, not listed.</li>}
          </ul>
          <h2>Diff</h2>
          {r.truncated && (
            <p class="notice" role="note">
              The diff is longer than shown: it was cut at 1 MiB.
            </p>
          )}
          {r.diff ? <Diff text={r.diff} /> : <p class="empty">No changes.</p>}
        </div>
      )}
    </section>
  );
}

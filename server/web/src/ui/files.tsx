import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "../api";
import { type Entry, type Root, routes } from "../protocol";
import { bytes } from "./common";

interface Open {
  path: string;
  content: string | null;
  size: number;
}

export function Files() {
  const [roots, setRoots] = useState<Root[]>([]);
  const [root, setRoot] = useState("");
  const [dir, setDir] = useState("");
  const [entries, setEntries] = useState<Entry[]>([]);
  const [file, setFile] = useState<Open | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    api<Root[]>(routes.roots)
      .then((r) => {
        setRoots(r);
        if (r[0]) setRoot(r[0].path);
      })
      .catch((e) => setError(e.message));
  }, []);
  useEffect(() => {
    if (!root) return;
    setError("");
    api<{ entries: Entry[] }>(routes.list(root, dir))
      .then((r) => setEntries([...r.entries].sort((a, b) => Number(b.isDir) - Number(a.isDir) || a.name.localeCompare(b.name))))
      .catch((e) => setError(e.message));
  }, [root, dir]);

  const openFile = async (e: Entry) => {
    const path = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDir) {
      setDir(path);
      setFile(null);
      return;
    }
    try {
      const r = await api<{ content: string; encoding?: string }>(routes.read(root, path));
      setFile({ path, content: r.encoding === "base64" ? null : r.content, size: e.size });
    } catch (err) {
      setError((err as Error).message);
    }
  };

  if (file) return <FileView root={root} file={file} onClose={() => setFile(null)} />;
  const parts = dir ? dir.split("/") : [];
  return (
    <section class="files" aria-label="Files">
      <div class="list-head">
        <h1>Files</h1>
        <label>
          <span class="sr-only">Root</span>
          <select
            aria-label="Root"
            value={root}
            onChange={(e) => {
              setRoot((e.target as HTMLSelectElement).value);
              setDir("");
            }}
          >
            {roots.map((r) => (
              <option key={r.path} value={r.path}>
                {r.label} ({r.kind})
              </option>
            ))}
          </select>
        </label>
      </div>
      <nav class="crumbs" aria-label="Folder">
        <button type="button" onClick={() => setDir("")}>
          /
        </button>
        {parts.map((p, i) => (
          <button key={i} type="button" onClick={() => setDir(parts.slice(0, i + 1).join("/"))}>
            {p}/
          </button>
        ))}
      </nav>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <ul class="entries">
        {entries.map((e) => (
          <li key={e.name}>
            <button type="button" onClick={() => openFile(e)}>
              <span class="name">
                {e.isDir ? "📁 " : ""}
                <bdi>{e.name}</bdi>
              </span>
              {!e.isDir && <span class="size">{bytes(e.size)}</span>}
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function FileView({ root, file, onClose }: { root: string; file: Open; onClose: () => void }) {
  const [base, setBase] = useState(file.content ?? "");
  const [mine, setMine] = useState(file.content ?? "");
  const [editing, setEditing] = useState(false);
  const [conflict, setConflict] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const save = async (expected: string) => {
    setStatus("");
    try {
      await api(routes.write, { method: "PUT", body: { root, path: file.path, content: mine, expectedContent: expected } });
      setBase(mine);
      setConflict(null);
      setEditing(false);
      setStatus("Saved.");
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        const r = await api<{ content: string }>(routes.read(root, file.path));
        setConflict(r.content);
      } else setStatus((e as Error).message);
    }
  };
  return (
    <section class="file" aria-label="File">
      <div class="list-head">
        <button type="button" class="back" aria-label="Back to folder" onClick={onClose}>
          ‹
        </button>
        <h1>
          <bdi>{file.path}</bdi>
        </h1>
        {file.content !== null && !editing && (
          <button type="button" onClick={() => setEditing(true)}>
            Edit
          </button>
        )}
      </div>
      {file.content === null ? (
        <p class="binary">
          Binary file, {bytes(file.size)}: not shown.
        </p>
      ) : conflict !== null ? (
        <div class="conflict" role="alert">
          <p>The file changed on disk since you opened it. Choose which version to keep.</p>
          <div class="sides">
            <div>
              <h2>Theirs (on disk)</h2>
              <pre class="out">{conflict}</pre>
            </div>
            <div>
              <h2>Mine</h2>
              <pre class="out">{mine}</pre>
            </div>
          </div>
          <div class="actions">
            <button type="button" class="primary" onClick={() => save(conflict)}>
              Keep mine
            </button>
            <button
              type="button"
              onClick={() => {
                setBase(conflict);
                setMine(conflict);
                setConflict(null);
                setEditing(false);
              }}
            >
              Take theirs
            </button>
          </div>
        </div>
      ) : editing ? (
        <div class="editor">
          <label for="file-edit" class="sr-only">
            File content
          </label>
          <textarea id="file-edit" value={mine} spellcheck={false} onInput={(e) => setMine((e.target as HTMLTextAreaElement).value)} />
          <div class="actions">
            <button type="button" class="primary" onClick={() => save(base)}>
              Save
            </button>
            <button
              type="button"
              onClick={() => {
                setMine(base);
                setEditing(false);
              }}
            >
              Cancel
            </button>
          </div>
        </div>
      ) : (
        <pre class="out file-content">{base}</pre>
      )}
      {status && <p role="status">{status}</p>}
    </section>
  );
}

/**
 * A single self-contained HTML page (no network): the restore timeline as SVG,
 * a per-tree table and the BO map, written for someone who never saw CRIU.
 */
import type { Timeline, TreeLine } from './timeline';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const COLORS: Record<string, string> = {
  'pre-restore': '#8ecae6',
  'setup-namespaces': '#a3b18a',
  'post-setup-namespaces': '#b5c99a',
  'post-restore': '#219ebc',
  'pre-resume': '#ffb703',
  'post-resume': '#2a9d8f',
  'network-unlock': '#cdb4db',
};

function fmt(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(3)} s`;
}

function svg(t: Timeline): string {
  const rows = t.sessions.flatMap((s) => s.trees.map((tree) => ({ s, tree })));
  const W = 1100;
  const left = 170;
  const rowH = 34;
  const top = 30;
  const span = Math.max(1, t.end - t.start);
  const x = (ms: number) => left + ((ms - t.start) / span) * (W - left - 20);
  const H = top + rows.length * rowH + 30;
  const parts: string[] = [];
  // time axis
  for (let i = 0; i <= 10; i++) {
    const ms = t.start + (span * i) / 10;
    parts.push(`<line x1="${x(ms)}" y1="${top - 8}" x2="${x(ms)}" y2="${H - 24}" class="grid"/>`);
    parts.push(`<text x="${x(ms)}" y="${top - 12}" class="axis">+${fmt(ms - t.start)}</text>`);
  }
  rows.forEach(({ s, tree }, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="8" y="${y + 20}" class="label">${esc(s.session)} / ${esc(tree.tree)}</text>`);
    for (const st of tree.stages) {
      const w = Math.max(2, x(st.end) - x(st.start));
      parts.push(
        `<rect x="${x(st.start)}" y="${y + 6}" width="${w}" height="20" fill="${COLORS[st.name] ?? '#adb5bd'}"><title>${esc(tree.tree)}: ${esc(st.name)} at +${fmt(st.start - t.start)} for ${fmt(st.end - st.start)}</title></rect>`,
      );
    }
    for (const wt of tree.waits) {
      const w = Math.max(2, x(wt.end) - x(wt.start));
      parts.push(
        `<rect x="${x(wt.start)}" y="${y + 11}" width="${w}" height="10" class="wait ${wt.outcome}"><title>${esc(wt.name)}: ${fmt(wt.end - wt.start)} (${wt.outcome})</title></rect>`,
      );
    }
  });
  for (const s of t.sessions) {
    for (const i of s.instants) {
      parts.push(
        `<line x1="${x(i.at)}" y1="${top}" x2="${x(i.at)}" y2="${H - 24}" class="instant ${i.kind}"><title>+${fmt(i.at - t.start)} ${esc(i.label)}</title></line>`,
      );
    }
  }
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="restore timeline">${parts.join('')}</svg>`;
}

function treeTable(t: Timeline): string {
  const rows: string[] = [];
  for (const s of t.sessions) {
    for (const tree of s.trees) {
      const at = (name: string) => {
        const st = tree.stages.find((x) => x.name === name);
        return st ? `+${fmt(st.start - t.start)}` : '–';
      };
      const wait = (gate: string) => {
        const w = tree.waits.find((x) => x.name.includes(gate));
        return w ? `${fmt(w.end - w.start)}${w.outcome === 'released' ? '' : ` (${w.outcome})`}` : '–';
      };
      rows.push(
        `<tr><td>${esc(s.session)}</td><td>${esc(tree.tree)}</td><td>${esc(tree.host)}</td><td>${tree.initPid || '–'}</td><td>${at('pre-restore')}</td><td>${at('post-restore')}</td><td>${wait('post-restore')}</td><td>${at('pre-resume')}</td><td>${wait('pre-resume')}</td><td>${at('post-resume')}</td><td>${statsCell(tree)}</td></tr>`,
      );
    }
  }
  return `<table><thead><tr><th>session</th><th>tree</th><th>host</th><th>root pid</th><th>pre-restore</th><th>post-restore</th><th>waited at post-restore gate</th><th>pre-resume</th><th>waited at resume barrier</th><th>post-resume</th><th>criu's own statistics</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function statsCell(tree: TreeLine): string {
  if (!tree.stats) return '–';
  return `restore ${fmt(tree.stats.restoreTimeUs / 1000)}, forking ${fmt(tree.stats.forkingTimeUs / 1000)}, ${tree.stats.pagesRestored} pages`;
}

function boTable(t: Timeline): string {
  const rows = t.sessions.flatMap((s) =>
    s.bos.map(
      (b) =>
        `<tr data-bo="${esc(b.id)}"><td>${esc(s.session)}</td><td>${esc(b.label)}<div class="id">${esc(b.id)}</div></td><td>+${fmt(b.activatedAt - t.start)}</td><td>${b.mappers
          .map(
            (m) =>
              `<span class="mapper">${esc(m.tree)} · task ${m.pid} · <code>${esc(m.address)}</code> · ${(m.size / 1024).toFixed(0)} KiB</span>`,
          )
          .join('')}</td></tr>`,
    ),
  );
  if (!rows.length) return '<p>No shared buffer object was activated in this trace.</p>';
  return `<table class="bos"><thead><tr><th>session</th><th>buffer object</th><th>activated</th><th>mapped by (tree · task · address · size)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

export function toHtml(t: Timeline, title = 'stagegate restore trace'): string {
  const aborts = t.sessions
    .filter((s) => s.abort)
    .map((s) => `<p class="abort">Session <b>${esc(s.session)}</b> was aborted: ${esc(s.abort)}</p>`);
  const legend = Object.entries(COLORS)
    .map(([k, c]) => `<span class="key"><i style="background:${c}"></i>${k}</span>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.grid{stroke:#eee}.axis{font-size:10px;fill:#777;text-anchor:middle}.label{font-size:12px;fill:#222}
.wait{fill:#e63946;opacity:.75}.wait.released{fill:#6c757d}.wait.aborted{fill:#e63946}
.instant{stroke-width:1.5}.instant.gate-opened{stroke:#2a9d8f}.instant.bo-activated{stroke:#7b2cbf;stroke-dasharray:3 3}
.instant.session-aborted{stroke:#e63946;stroke-width:3}.instant.session-completed{stroke:#264653}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f6f6f6}.id{color:#888;font-size:11px}.mapper{display:inline-block;margin:0 10px 2px 0}
.key{margin-right:12px;font-size:12px}.key i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
.abort{color:#b00020}.hl{background:#fff3bf}
</style></head><body>
<h1>${esc(title)}</h1>
<p>Each row is one process tree, restored by its own <code>criu restore</code>. Coloured bars are the restore stages CRIU went through;
the grey bar inside a stage is the time the tree waited at a stagegate gate for the other trees (red if it was aborted there).
Vertical lines mark decisions: a gate opening (green), a shared buffer object verified and activated (purple, dashed), an abort (red).</p>
<p>${legend}<span class="key"><i style="background:#6c757d"></i>waiting at a gate</span></p>
${aborts.join('')}
${svg(t)}
<h2>Trees</h2>
${treeTable(t)}
<h2>Shared buffer objects: who maps what, where</h2>
<p>A buffer object is memory shared by several processes; each maps it at its own address. It is activated once every mapping was checked in the restored processes.</p>
${boTable(t)}
<p class="id">Generated by stagegate. Times are relative to the first event (+0).</p>
<script>
// Highlight a BO row on hover; nothing is loaded from the network.
document.querySelectorAll('tr[data-bo]').forEach(function (row) {
  row.addEventListener('mouseenter', function () { row.classList.add('hl'); });
  row.addEventListener('mouseleave', function () { row.classList.remove('hl'); });
});
</script>
</body></html>
`;
}

// Strata's web console. Everything it shows comes from SQL sent to the HTTP API
// (POST /v1/statements, JSON results): the query log, system.tables, system.columns,
// system.partitions, information_schema's constraint views, system.materialized_views and
// system.lineage. Values reach the page as text nodes only, never as HTML.
'use strict';

const PAGE_ROWS = 50;
const CHART_POINTS = 60;
const KEYWORDS = ('SELECT FROM WHERE GROUP BY ORDER HAVING LIMIT OFFSET JOIN LEFT RIGHT FULL ' +
  'INNER OUTER CROSS ON USING AS AND OR NOT IN IS NULL LIKE ILIKE BETWEEN CASE WHEN THEN ELSE ' +
  'END DISTINCT UNION ALL EXCEPT INTERSECT WITH INSERT INTO VALUES UPDATE SET DELETE CREATE ' +
  'TABLE VIEW MATERIALIZED DROP ALTER ADD COLUMN PRIMARY KEY FOREIGN REFERENCES PARTITION ' +
  'COPY DESCRIBE SHOW EXPLAIN ANALYZE COUNT SUM AVG MIN MAX CAST DATE TIMESTAMP INTERVAL ' +
  'TRUE FALSE ASC DESC QUALIFY OVER ROW_NUMBER RANK REFRESH AT BEFORE').split(' ');

const state = { token: null, result: null, page: 0, names: [], selected: 0, matches: [], graphs: 0 };
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- the API

async function sql(statement) {
  const response = await fetch('v1/statements?format=json', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'Authorization': 'Bearer ' + state.token,
      'X-Requested-With': 'XMLHttpRequest',
    },
    body: JSON.stringify({ statement }),
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    signOut('Your session ended: sign in again.');
  }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error.message : 'HTTP ' + response.status);
  }
  return body;
}

/** A SQL string literal (Strata's parser reads backslash escapes: both are doubled). */
function literal(text) {
  return "'" + String(text).replace(/\\/g, '\\\\').replace(/'/g, "''") + "'";
}

// ---------------------------------------------------------------- sign-in

async function signIn() {
  $('login-error').textContent = '';
  const user = $('user').value;
  const basic = btoa(unescape(encodeURIComponent(user + ':' + $('password').value)));
  const response = await fetch('v1/login', {
    method: 'POST',
    headers: { 'Authorization': 'Basic ' + basic, 'X-Requested-With': 'XMLHttpRequest' },
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    $('login-error').textContent = body && body.error ? body.error.message : 'Sign-in failed';
    return;
  }
  state.token = body.token;
  sessionStorage.setItem('strata-token', body.token);
  sessionStorage.setItem('strata-user', body.user);
  start(body.user);
}

function signOut(message) {
  state.token = null;
  sessionStorage.removeItem('strata-token');
  $('login-panel').classList.remove('hidden');
  $('tabs').classList.add('hidden');
  document.querySelectorAll('.tab').forEach((t) => t.classList.add('hidden'));
  $('login-error').textContent = message || '';
}

function start(user) {
  $('who').textContent = user;
  $('login-panel').classList.add('hidden');
  $('tabs').classList.remove('hidden');
  show('query');
  loadNames();
}

function show(tab) {
  document.querySelectorAll('.tab').forEach((t) => t.classList.toggle('hidden', t.id !== tab));
  document.querySelectorAll('#tabs button')
    .forEach((b) => b.classList.toggle('active', b.dataset.tab === tab));
  if (tab === 'history') loadHistory();
  if (tab === 'tables') loadTree();
  if (tab === 'views') loadViews();
}

// ---------------------------------------------------------------- the grid and the chart

const NUMERIC = /^(U?Int\d|Float|Decimal)/;
const TEMPORAL = /^(Date|Timestamp)/;

function cell(row, name) {
  const value = row[name];
  return value === undefined ? null : value;
}

/** A table of `rows` (objects) with the columns of `meta`; `onClick(row)` makes rows links. */
function grid(meta, rows, onClick) {
  const table = document.createElement('table');
  table.className = 'grid';
  const head = table.createTHead().insertRow();
  for (const column of meta) {
    const th = document.createElement('th');
    th.textContent = column.name;
    th.title = column.type;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const column of meta) {
      const td = tr.insertCell();
      const value = cell(row, column.name);
      if (value === null) {
        td.textContent = 'NULL';
        td.className = 'null';
      } else {
        td.textContent = typeof value === 'object' ? JSON.stringify(value) : String(value);
        td.title = td.textContent;
        if (NUMERIC.test(column.type)) td.className = 'num';
      }
    }
    if (onClick) {
      tr.className = 'clickable';
      tr.addEventListener('click', () => onClick(row));
    }
  }
  return table;
}

function renderPage() {
  const { meta, data } = state.result;
  const pages = Math.max(1, Math.ceil(data.length / PAGE_ROWS));
  state.page = Math.min(Math.max(0, state.page), pages - 1);
  const rows = data.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS);
  $('grid').replaceChildren(grid(meta, rows));
  $('pager').classList.toggle('hidden', pages < 2);
  $('page').textContent = 'Page ' + (state.page + 1) + ' of ' + pages;
  $('prev').disabled = state.page === 0;
  $('next').disabled = state.page >= pages - 1;
}

/**
 * How to draw a result: a line over a date or time column, bars over a text column, each
 * against the first numeric column; none when there is nothing numeric to draw.
 */
function chartPlan(meta) {
  const y = meta.find((c) => NUMERIC.test(c.type));
  if (!y) return null;
  const x = meta.find((c) => c !== y && !NUMERIC.test(c.type)) ||
            meta.find((c) => c !== y);
  if (!x) return null;
  const kind = TEMPORAL.test(x.type) || NUMERIC.test(x.type) ? 'line' : 'bar';
  return { x, y, kind };
}

function svg(name, attributes) {
  const element = document.createElementNS('http://www.w3.org/2000/svg', name);
  for (const [k, v] of Object.entries(attributes || {})) element.setAttribute(k, v);
  return element;
}

function text(x, y, content, attributes) {
  const t = svg('text', Object.assign({ x, y, 'font-size': 11, fill: '#374151' }, attributes));
  t.textContent = content;
  return t;
}

function renderChart() {
  const { meta, data } = state.result;
  const plan = chartPlan(meta);
  const box = $('chart');
  box.replaceChildren();
  if (!plan || data.length === 0) return;
  const points = data.slice(0, CHART_POINTS)
    .filter((r) => cell(r, plan.y.name) !== null)
    .map((r) => ({ label: String(cell(r, plan.x.name)), value: Number(cell(r, plan.y.name)) }))
    .filter((p) => Number.isFinite(p.value));
  if (points.length === 0) return;
  const width = 720, height = 300, left = 64, bottom = 60, top = 24;
  const max = Math.max(0, ...points.map((p) => p.value));
  const min = Math.min(0, ...points.map((p) => p.value));
  const span = max - min || 1;
  const y = (v) => top + (height - top - bottom) * (1 - (v - min) / span);
  const step = (width - left - 10) / points.length;
  const chart = svg('svg', { width, height, 'data-kind': plan.kind, role: 'img' });
  chart.appendChild(text(left, 14, plan.y.name + ' by ' + plan.x.name, { 'font-weight': 600 }));
  chart.appendChild(svg('line', { x1: left, x2: width - 10, y1: y(0), y2: y(0), stroke: '#9ca3af' }));
  for (const v of [min, (min + max) / 2, max]) {
    chart.appendChild(text(left - 6, y(v) + 4, Number(v.toPrecision(4)).toString(),
                           { 'text-anchor': 'end' }));
  }
  if (plan.kind === 'bar') {
    points.forEach((p, i) => {
      const x = left + i * step + step * 0.1;
      const bar = svg('rect', {
        x, y: Math.min(y(p.value), y(0)), width: Math.max(1, step * 0.8),
        height: Math.abs(y(0) - y(p.value)), fill: '#2f6fdd',
      });
      const tip = svg('title');
      tip.textContent = p.label + ': ' + p.value;
      bar.appendChild(tip);
      chart.appendChild(bar);
    });
  } else {
    const path = points.map((p, i) => (i ? 'L' : 'M') + (left + (i + 0.5) * step) + ',' + y(p.value));
    chart.appendChild(svg('path', { d: path.join(' '), fill: 'none', stroke: '#2f6fdd', 'stroke-width': 2 }));
    points.forEach((p, i) => chart.appendChild(svg('circle', {
      cx: left + (i + 0.5) * step, cy: y(p.value), r: 2.5, fill: '#2f6fdd',
    })));
  }
  const every = Math.ceil(points.length / 12);
  points.forEach((p, i) => {
    if (i % every) return;
    const x = left + (i + 0.5) * step;
    chart.appendChild(text(x, height - bottom + 14, p.label.slice(0, 16),
                           { transform: 'rotate(30 ' + x + ' ' + (height - bottom + 14) + ')' }));
  });
  box.appendChild(chart);
}

async function run() {
  const statement = $('editor').value.trim();
  if (!statement) return;
  $('query-error').textContent = '';
  $('status').textContent = 'Running…';
  const started = performance.now();
  try {
    const result = await sql(statement);
    const ms = Math.round(performance.now() - started);
    state.result = { meta: result.meta || [], data: result.data || [] };
    state.page = 0;
    $('status').textContent = result.rows + ' rows in ' + ms + ' ms';
    renderPage();
    renderChart();
    loadNames();
  } catch (e) {
    $('status').textContent = '';
    $('query-error').textContent = e.message;
  }
}

// ---------------------------------------------------------------- completion

/** Keywords, and the tables and columns of the warehouse, for completion. */
async function loadNames() {
  try {
    const tables = await sql('SELECT DISTINCT table_name FROM system.tables');
    const columns = await sql('SELECT DISTINCT column_name FROM system.columns');
    state.names = [
      ...tables.data.map((r) => ({ word: r.table_name, kind: 'table' })),
      ...columns.data.map((r) => ({ word: r.column_name, kind: 'column' })),
      ...KEYWORDS.map((k) => ({ word: k, kind: 'keyword' })),
    ];
  } catch (e) {
    state.names = KEYWORDS.map((k) => ({ word: k, kind: 'keyword' }));
  }
}

function currentWord() {
  const editor = $('editor');
  const before = editor.value.slice(0, editor.selectionStart);
  const match = /[A-Za-z_][A-Za-z0-9_]*$/.exec(before);
  return match ? match[0] : '';
}

function suggest(force) {
  const word = currentWord();
  const box = $('complete');
  if (!word && !force) return hideCompletion();
  const lower = word.toLowerCase();
  const seen = new Set();
  state.matches = state.names.filter((n) => {
    const key = n.word.toLowerCase();
    if (!key.startsWith(lower) || key === lower || seen.has(key)) return false;
    seen.add(key);
    return true;
  }).slice(0, 12);
  if (state.matches.length === 0) return hideCompletion();
  state.selected = 0;
  box.replaceChildren(...state.matches.map((m, i) => {
    const item = document.createElement('div');
    item.textContent = m.word;
    const kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = m.kind;
    item.appendChild(kind);
    item.addEventListener('mousedown', (e) => { e.preventDefault(); accept(i); });
    return item;
  }));
  const editor = $('editor');
  const lines = editor.value.slice(0, editor.selectionStart).split('\n');
  box.style.left = Math.min(8 + lines[lines.length - 1].length * 7.8, editor.clientWidth - 180) + 'px';
  box.style.top = Math.min(8 + lines.length * 19.5 - editor.scrollTop, editor.clientHeight) + 'px';
  box.classList.remove('hidden');
  highlight();
}

function highlight() {
  [...$('complete').children].forEach((c, i) => c.classList.toggle('selected', i === state.selected));
}

function hideCompletion() {
  $('complete').classList.add('hidden');
  state.matches = [];
}

function accept(i) {
  const match = state.matches[i];
  if (!match) return;
  const editor = $('editor');
  const word = currentWord();
  const at = editor.selectionStart;
  const insert = match.kind === 'keyword' && word && word === word.toLowerCase()
    ? match.word.toLowerCase() : match.word;
  editor.value = editor.value.slice(0, at - word.length) + insert + editor.value.slice(at);
  editor.selectionStart = editor.selectionEnd = at - word.length + insert.length;
  hideCompletion();
  editor.focus();
}

function onEditorKey(e) {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    hideCompletion();
    run();
    return;
  }
  if (e.key === ' ' && e.ctrlKey) {
    e.preventDefault();
    suggest(true);
    return;
  }
  if (state.matches.length === 0) return;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    e.preventDefault();
    const n = state.matches.length;
    state.selected = (state.selected + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
    highlight();
  } else if (e.key === 'Tab' || e.key === 'Enter') {
    e.preventDefault();
    accept(state.selected);
  } else if (e.key === 'Escape') {
    hideCompletion();
  }
}

// ---------------------------------------------------------------- history

async function loadHistory() {
  const box = $('history-grid');
  try {
    const result = await sql(
      'SELECT started_at, user_name, status, duration_ms, rows_returned, partitions_scanned, ' +
      'partitions_total, bytes_scanned, query_text FROM system.query_log ' +
      'ORDER BY started_at DESC LIMIT 100');
    box.replaceChildren(grid(result.meta, result.data, (row) => {
      $('editor').value = row.query_text;
      show('query');
    }));
  } catch (e) {
    box.textContent = e.message;
  }
}

// ---------------------------------------------------------------- tables

async function loadTree() {
  const tree = $('tree');
  try {
    const result = await sql(
      'SELECT database_name, schema_name, table_name, kind FROM system.tables ' +
      'ORDER BY database_name, schema_name, table_name');
    const items = [];
    let schema = null;
    for (const row of result.data) {
      if (row.database_name + '.' + row.schema_name !== schema) {
        schema = row.database_name + '.' + row.schema_name;
        const title = document.createElement('div');
        title.className = 'schema';
        title.textContent = schema;
        items.push(title);
      }
      const item = document.createElement('div');
      item.className = 'table';
      item.dataset.name = row.database_name + '.' + row.schema_name + '.' + row.table_name;
      const kind = String(row.kind || 'table').toLowerCase();
      item.textContent = row.table_name + (kind === 'table' ? '' : ' (' + kind + ')');
      item.addEventListener('click', () => {
        document.querySelectorAll('#tree .table.selected').forEach((t) => t.classList.remove('selected'));
        item.classList.add('selected');
        loadTable(row.database_name, row.schema_name, row.table_name);
      });
      items.push(item);
    }
    tree.replaceChildren(...items);
  } catch (e) {
    tree.textContent = e.message;
  }
}

function heading(level, content) {
  const h = document.createElement(level);
  h.textContent = content;
  return h;
}

async function section(title, statement, id) {
  const part = document.createElement('div');
  part.id = id;
  part.appendChild(heading('h3', title));
  try {
    const result = await sql(statement);
    part.appendChild(result.data.length ? grid(result.meta, result.data)
                                        : Object.assign(document.createElement('p'),
                                                        { className: 'muted', textContent: 'None' }));
  } catch (e) {
    part.appendChild(Object.assign(document.createElement('p'),
                                   { className: 'error', textContent: e.message }));
  }
  return part;
}

async function loadTable(database, schema, table) {
  const detail = $('table-detail');
  const where = 'database_name = ' + literal(database) + ' AND schema_name = ' + literal(schema) +
                ' AND table_name = ' + literal(table);
  const info = await sql('SELECT comment, row_count, bytes, partitions, kind FROM system.tables WHERE ' + where)
    .catch(() => ({ data: [] }));
  const parts = [heading('h2', schema + '.' + table)];
  const about = info.data[0] || {};
  parts.push(Object.assign(document.createElement('p'), {
    id: 'table-summary',
    textContent: [about.comment, about.row_count !== undefined ? about.row_count + ' rows' : null,
                  about.bytes !== undefined ? about.bytes + ' bytes' : null,
                  about.partitions !== undefined ? about.partitions + ' partitions' : null]
      .filter((s) => s !== null && s !== undefined).join(' · '),
  }));
  const constraintWhere = 'c.table_catalog = ' + literal(database) + ' AND c.table_schema = ' +
                          literal(schema) + ' AND c.table_name = ' + literal(table);
  parts.push(...await Promise.all([
    section('Columns', 'SELECT column_name, data_type, is_nullable, comment FROM system.columns WHERE ' +
            where + ' ORDER BY ordinal_position', 'columns'),
    section('Constraints',
            'SELECT c.constraint_name, c.constraint_type, ' +
            "string_agg(k.column_name, ', ' ORDER BY k.ordinal_position) AS columns, " +
            'max(k.referenced_table_name) AS references_table ' +
            'FROM information_schema.table_constraints c LEFT JOIN information_schema.key_column_usage k ' +
            'ON c.constraint_name = k.constraint_name AND c.table_schema = k.table_schema ' +
            'AND c.table_name = k.table_name WHERE ' + constraintWhere +
            ' GROUP BY c.constraint_name, c.constraint_type ORDER BY 1', 'constraints'),
    section('Partitions', 'SELECT partition_name, lower_bound, upper_bound, row_count, file_count, ' +
            'size_bytes FROM system.partitions WHERE ' + where + ' ORDER BY lower_bound', 'partitions'),
  ]));
  parts.push(await lineage(database + '.' + schema + '.' + table));
  detail.replaceChildren(...parts);
}

// ---------------------------------------------------------------- materialized views and lineage

async function loadViews() {
  const box = $('views-grid');
  try {
    const result = await sql(
      'SELECT database_name, schema_name, view_name, refresh_mode, is_stale, staleness_seconds, last_refresh_at, ' +
      'last_refresh_kind, rows, invalid_reason FROM system.materialized_views ' +
      'ORDER BY database_name, schema_name, view_name');
    box.replaceChildren(grid(result.meta, result.data, async (row) => {
      $('view-lineage').replaceChildren(await lineage(row.database_name + '.' + row.schema_name + '.' + row.view_name));
    }));
  } catch (e) {
    box.textContent = e.message;
  }
}

/** The lineage of `name` (`db.schema.table`) drawn as a graph: upstream left, downstream right. */
async function lineage(name) {
  const part = document.createElement('div');
  part.id = 'lineage';
  part.appendChild(heading('h3', 'Lineage'));
  let edges;
  try {
    const result = await sql('SELECT upstream, downstream, depth FROM system.lineage WHERE upstream = ' +
                             literal(name) + ' OR downstream = ' + literal(name));
    edges = result.data;
  } catch (e) {
    part.appendChild(Object.assign(document.createElement('p'), { className: 'error', textContent: e.message }));
    return part;
  }
  if (edges.length === 0) {
    part.appendChild(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'No upstream or downstream objects' }));
    return part;
  }
  // Columns by signed distance: upstream objects at -depth, downstream at +depth.
  const level = new Map([[name, 0]]);
  for (const e of edges) {
    if (e.downstream === name) level.set(e.upstream, -Number(e.depth));
    if (e.upstream === name) level.set(e.downstream, Number(e.depth));
  }
  const levels = [...new Set(level.values())].sort((a, b) => a - b);
  const byLevel = levels.map((l) => [...level.entries()].filter(([, v]) => v === l).map(([k]) => k));
  const boxWidth = 190, boxHeight = 28, gapX = 70, gapY = 16;
  const width = levels.length * (boxWidth + gapX);
  const height = Math.max(...byLevel.map((c) => c.length)) * (boxHeight + gapY) + 20;
  const at = new Map();
  byLevel.forEach((column, i) => column.forEach((node, j) => {
    at.set(node, { x: 10 + i * (boxWidth + gapX), y: 10 + j * (boxHeight + gapY) });
  }));
  const graph = svg('svg', { width, height });
  const marker = 'arrow-' + (++state.graphs);
  const arrow = svg('marker', { id: marker, viewBox: '0 0 10 10', refX: 10, refY: 5,
                                markerWidth: 6, markerHeight: 6, orient: 'auto' });
  arrow.appendChild(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#6b7280' }));
  const defs = svg('defs');
  defs.appendChild(arrow);
  graph.appendChild(defs);
  // Direct edges (depth 1) from and to `name`; objects further away stand in their column.
  for (const e of edges) {
    const from = at.get(e.upstream), to = at.get(e.downstream);
    if (!from || !to || Number(e.depth) !== 1) continue;
    graph.appendChild(svg('line', {
      x1: from.x + boxWidth, y1: from.y + boxHeight / 2, x2: to.x, y2: to.y + boxHeight / 2,
      stroke: '#6b7280', 'marker-end': 'url(#' + marker + ')',
    }));
  }
  for (const [node, p] of at) {
    const group = svg('g');
    const tip = svg('title');
    tip.textContent = node;
    group.appendChild(tip);
    group.appendChild(svg('rect', { x: p.x, y: p.y, width: boxWidth, height: boxHeight, rx: 4,
                                    fill: node === name ? '#e8effc' : '#fff', stroke: '#2f6fdd' }));
    group.appendChild(text(p.x + 8, p.y + 18, node.split('.').slice(1).join('.').slice(0, 28),
                           { 'class': 'node' }));
    graph.appendChild(group);
  }
  part.appendChild(graph);
  return part;
}

// ---------------------------------------------------------------- wiring

window.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('click', signIn);
  $('password').addEventListener('keydown', (e) => { if (e.key === 'Enter') signIn(); });
  $('run').addEventListener('click', run);
  $('prev').addEventListener('click', () => { state.page -= 1; renderPage(); });
  $('next').addEventListener('click', () => { state.page += 1; renderPage(); });
  $('history-refresh').addEventListener('click', loadHistory);
  $('editor').addEventListener('keydown', onEditorKey);
  $('editor').addEventListener('input', () => suggest(false));
  $('editor').addEventListener('blur', () => setTimeout(hideCompletion, 150));
  document.querySelectorAll('#tabs button').forEach((b) => b.addEventListener('click', () => show(b.dataset.tab)));
  const token = sessionStorage.getItem('strata-token');
  if (token) {
    state.token = token;
    start(sessionStorage.getItem('strata-user') || '');
  }
});

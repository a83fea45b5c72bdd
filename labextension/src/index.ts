/**
 * jupyter-colab-guard: the guard's decisions as JupyterLab dialogs (JupyterLab 4 and
 * Notebook 7).
 *
 * The server decides everything; this extension only shows what it said:
 * - a refused execution or a runtime notice arrives as an iopub display_data whose
 *   metadata has `colab_guard` (server/websocket.py); its fields come from
 *   `render.dialog_fields` in `metadata.colab_guard.dialog`, else (an older server) the
 *   warning's plain text is shown as it is;
 * - a kernel start the guard refused (HTTP 403/503 whose message starts with
 *   "colab-guard:") gets its own dialog instead of JupyterLab's "Error Starting Kernel";
 * - a `warn` cell: every execute_request this page sends says it can answer dialogs
 *   (`metadata.colab_guard.dialogs`), so the server holds such a cell and sends the
 *   warning with a one-use token (in `transient`); "Run anyway" or "Cancel" posts the
 *   token to `colab-guard/api/consent`, and the server runs the cell or cancels it.
 *
 * Every server text goes into the DOM as text (textContent), never as HTML.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ISessionContext, showDialog } from '@jupyterlab/apputils';
import { DocumentRegistry, IDocumentWidget } from '@jupyterlab/docregistry';
import { KernelMessage, ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

/** One matched rule, as render.dialog_fields describes it. */
interface GuardFinding {
  category: string;
  title: string;
  rule: string;
  reason: string;
  line: number | null;
  evidence: string;
  faqUrl: string;
}

/** What the server said about a refusal or a notice (render.dialog_fields). */
interface GuardFields {
  reason: string;
  service: string;
  message: string;
  note: string;
  findings: GuardFinding[];
  level: string;
  strikes: number | null;
  until: number | null;
  standing: string;
  next: string;
  detail: string;
  faqUrl: string;
  appealUrl: string;
}

type JSONish = { [key: string]: unknown };

const PREFIX = 'colab-guard:';

function isObject(value: unknown): value is JSONish {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** The server's fields, type-checked one by one (the wire is not trusted for types). */
function readFields(raw: JSONish): GuardFields {
  const findings = Array.isArray(raw.findings) ? raw.findings.filter(isObject) : [];
  return {
    reason: str(raw.reason),
    service: str(raw.service),
    message: str(raw.message),
    note: str(raw.note),
    findings: findings.map(f => ({
      category: str(f.category),
      title: str(f.title) || str(f.category),
      rule: str(f.rule),
      reason: str(f.reason),
      line: num(f.line),
      evidence: str(f.evidence),
      faqUrl: str(f.faq_url)
    })),
    level: str(raw.level),
    strikes: num(raw.strikes),
    until: num(raw.until),
    standing: str(raw.standing),
    next: str(raw.next),
    detail: str(raw.detail),
    faqUrl: str(raw.faq_url),
    appealUrl: str(raw.appeal_url)
  };
}

// -- building the body (text nodes only) ------------------------------------------------

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text = '',
  className = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text) {
    node.textContent = text;
  }
  if (className) {
    node.className = className;
  }
  return node;
}

/** A link opening in a new tab; only http(s) or same-site URLs become links. */
function link(text: string, url: string): HTMLElement {
  let href: URL | null = null;
  try {
    href = new URL(url, window.location.href);
  } catch {
    href = null;
  }
  if (!href || (href.protocol !== 'https:' && href.protocol !== 'http:')) {
    return el('span', text);
  }
  const a = el('a', text);
  a.href = href.href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}

function links(fields: GuardFields): HTMLElement | null {
  const p = el('p', '', 'jp-ColabGuard-links');
  if (fields.faqUrl) {
    p.appendChild(link('Prohibited actions (FAQ)', fields.faqUrl));
  }
  if (fields.appealUrl) {
    if (p.childNodes.length) {
      p.appendChild(document.createTextNode(' · '));
    }
    p.appendChild(link('File an appeal', fields.appealUrl));
  }
  return p.childNodes.length ? p : null;
}

function findingList(fields: GuardFields): HTMLElement | null {
  if (!fields.findings.length) {
    return null;
  }
  const ul = el('ul', '', 'jp-ColabGuard-findings');
  for (const f of fields.findings) {
    const li = el('li');
    const label = f.faqUrl ? link('', f.faqUrl) : el('span');
    label.appendChild(el('b', f.title));
    li.appendChild(label);
    let rest = f.reason ? `: ${f.reason}` : '';
    if (f.line) {
      rest += ` (line ${f.line})`;
    }
    li.appendChild(document.createTextNode(rest));
    if (f.evidence) {
      li.appendChild(document.createTextNode(' '));
      li.appendChild(el('code', f.evidence));
    }
    ul.appendChild(li);
  }
  return ul;
}

/** "until" in the user's local time (the server sends seconds since the epoch). */
function localTime(seconds: number): string {
  return new Date(seconds * 1000).toLocaleString(undefined, {
    dateStyle: 'medium',
    timeStyle: 'short'
  });
}

function strikesLine(fields: GuardFields): string {
  if (fields.strikes === null) {
    return '';
  }
  const n = fields.strikes;
  return `You have ${n} strike${n === 1 ? '' : 's'}.` + (fields.next ? ` ${fields.next}` : '');
}

/** Title and body of the dialog for the server's fields. */
function describe(fields: GuardFields): { title: string; body: HTMLElement } {
  const body = el('div', '', 'jp-ColabGuard-body');
  const add = (node: HTMLElement | null): void => {
    if (node) {
      body.appendChild(node);
    }
  };
  const service = fields.service || 'this service';
  let title: string;
  if (fields.reason === 'restricted') {
    title = `Your use of ${service} is restricted`;
    add(el('p', fields.note));
    add(
      el(
        'p',
        fields.until !== null
          ? `Every execution is refused until ${localTime(fields.until)} (your local time).`
          : fields.standing,
        'jp-ColabGuard-until'
      )
    );
    add(el('p', strikesLine(fields)));
  } else if (fields.reason === 'suspended') {
    title = `Your use of ${service} is suspended`;
    add(el('p', fields.note));
    add(el('p', fields.standing));
  } else if (fields.reason === 'runtime') {
    title = 'A process was stopped';
    add(el('p', fields.message, 'jp-ColabGuard-message'));
    add(findingList(fields));
    add(el('p', fields.note));
    add(el('p', fields.detail, 'jp-ColabGuard-detail'));
    add(el('p', strikesLine(fields) || fields.standing));
  } else if (fields.reason === 'block') {
    title = 'Warning';
    add(el('p', fields.message, 'jp-ColabGuard-message'));
    add(findingList(fields));
    add(el('p', fields.note));
    add(el('p', strikesLine(fields) || fields.standing));
  } else {
    // unavailable, too_large, timeout, unguarded: the server's sentence says why
    title = 'This code was not run';
    add(el('p', fields.note));
  }
  add(links(fields));
  for (const p of Array.from(body.querySelectorAll('p'))) {
    if (!p.childNodes.length) {
      p.remove();
    }
  }
  return { title, body };
}

/** The consent dialog of a warn cell: the server's texts, "Cancel" and "Run anyway". */
async function askConsent(
  app: JupyterFrontEnd,
  fields: GuardFields,
  token: string
): Promise<void> {
  const body = el('div', '', 'jp-ColabGuard-body');
  const add = (node: HTMLElement | null): void => {
    if (node && (node.childNodes.length || node.tagName === 'UL')) {
      body.appendChild(node);
    }
  };
  add(el('p', fields.message, 'jp-ColabGuard-message'));
  add(findingList(fields));
  add(el('p', fields.note));
  add(el('p', fields.next, 'jp-ColabGuard-next'));
  add(links(fields));
  body.classList.add('jp-ColabGuard-dialog', 'jp-ColabGuard-consent');
  const result = await showDialog({
    title: 'Warning',
    body: new Widget({ node: body }),
    buttons: [
      Dialog.cancelButton({ label: 'Cancel' }),
      Dialog.warnButton({ label: 'Run anyway' })
    ],
    defaultButton: 0
  });
  // closing the dialog any other way is a Cancel
  const choice = result.button.accept ? 'run' : 'cancel';
  const settings = app.serviceManager.serverSettings;
  const url = `${settings.baseUrl.replace(/\/?$/, '/')}colab-guard/api/consent`;
  try {
    const reply = await ServerConnection.makeRequest(
      url,
      { method: 'POST', body: JSON.stringify({ token, choice }) },
      settings
    );
    if (!reply.ok) {
      throw new Error(`HTTP ${reply.status}`);
    }
  } catch (err) {
    const failed = el('div', '', 'jp-ColabGuard-dialog');
    failed.appendChild(
      el('p', `Your answer could not be sent to the server (${String(err)}). The cell will not run.`)
    );
    show('Answer not sent', failed);
  }
}

function show(title: string, body: HTMLElement): void {
  body.classList.add('jp-ColabGuard-dialog');
  void showDialog({
    title,
    body: new Widget({ node: body }),
    buttons: [Dialog.okButton({ label: 'OK' })]
  });
}

// -- refused executions and notices ------------------------------------------------------

const shown = new Set<string>();

function onIopub(app: JupyterFrontEnd, msg: KernelMessage.IMessage): void {
  const type = msg.header.msg_type;
  if (type !== 'display_data' && type !== 'execute_result') {
    return;
  }
  const content = msg.content as JSONish;
  const metadata = isObject(content.metadata) ? content.metadata : {};
  const guard = metadata.colab_guard;
  if (!isObject(guard) || shown.has(msg.header.msg_id)) {
    return;
  }
  shown.add(msg.header.msg_id);
  const data = isObject(content.data) ? content.data : {};
  const raw = isObject(guard.dialog) ? guard.dialog : null;
  if (raw) {
    const fields = readFields({ ...raw, reason: str(guard.reason) || raw.reason });
    fields.detail = str(guard.detail) || fields.detail;
    const transient = isObject(content.transient) ? content.transient : {};
    const consent = isObject(transient.colab_guard_consent) ? transient.colab_guard_consent : {};
    if (fields.reason === 'warn') {
      const token = str(consent.token);
      if (token) {
        void askConsent(app, fields, token);
      }
      return;
    }
    const { title, body } = describe(fields);
    show(title, body);
    return;
  }
  // a server without dialog_fields: its plain-text warning, as it is
  const body = el('div');
  for (const line of str(data['text/plain']).split('\n')) {
    body.appendChild(el('p', line));
  }
  show('Warning', body);
}

// -- a kernel start the guard refused ---------------------------------------------------

/** The server's sentence in a refused kernel start ("colab-guard: ..."), if it is one. */
function kernelRefusal(message: string, traceback: string): string | null {
  for (const text of [message, traceback]) {
    const at = text.indexOf(PREFIX);
    if (at >= 0) {
      return text
        .slice(at + PREFIX.length)
        .split('\n')[0]
        .replace(/\)\s*$/, '')
        .trim();
    }
  }
  return null;
}

/**
 * The guard's dialog for a refused kernel start, shown at once (JupyterLab asks "Select
 * Kernel" right after a failed start, and dialogs queue); the user's standing, from
 * the server's /colab-guard/api/strikes/me, is added when it arrives.
 */
function showKernelRefused(app: JupyterFrontEnd, sentence: string): void {
  const settings = app.serviceManager.serverSettings;
  const base = settings.baseUrl.replace(/\/?$/, '/');
  const body = el('div', '', 'jp-ColabGuard-body');
  body.appendChild(
    el('p', 'The server did not start a kernel for this notebook, so no code can run in it.')
  );
  body.appendChild(el('p', `Reason given by the server: ${sentence}.`, 'jp-ColabGuard-detail'));
  const standing = el('p', '', 'jp-ColabGuard-standing');
  body.appendChild(standing);
  const p = el('p', '', 'jp-ColabGuard-links');
  p.appendChild(link('Your standing and appeals', `${base}colab-guard/`));
  p.appendChild(document.createTextNode(' · '));
  p.appendChild(link('Prohibited actions (FAQ)', `${base}colab-guard/faq`));
  body.appendChild(p);
  show('Kernel not started', body);
  void ServerConnection.makeRequest(`${base}colab-guard/api/strikes/me`, {}, settings)
    .then(r => (r.ok ? r.json() : null))
    .then((parsed: unknown) => {
      if (!isObject(parsed)) {
        return;
      }
      const strikes = num(parsed.strikes);
      const parts: string[] = [];
      if (parsed.level === 'suspended') {
        parts.push(
          'Your use is suspended: kernels and executions are refused until an ' +
            'administrator reviews your account.'
        );
      }
      if (strikes !== null) {
        parts.push(`You have ${strikes} strike${strikes === 1 ? '' : 's'}.`);
      }
      standing.textContent = parts.join(' ');
    })
    .catch(() => undefined);
}

/**
 * JupyterLab has no public hook for a failed kernel start: its SessionContext shows
 * "Error Starting Kernel" from `_displayKernelError(message, traceback)`. This wraps that
 * method of each notebook's session context: a guard refusal gets the guard's dialog,
 * anything else JupyterLab's own. Should the method ever be renamed, JupyterLab's dialog
 * (with the server's message) is what users see.
 */
function watchKernelStart(app: JupyterFrontEnd, ctx: ISessionContext): void {
  type Display = (message: string, traceback: string) => Promise<void>;
  const target = ctx as unknown as { _displayKernelError?: Display };
  const original = target._displayKernelError;
  if (typeof original !== 'function') {
    return;
  }
  target._displayKernelError = async (message: string, traceback: string): Promise<void> => {
    const sentence = kernelRefusal(str(message), str(traceback));
    if (sentence === null) {
      return original.call(ctx, message, traceback);
    }
    showKernelRefused(app, sentence);
  };
}

/**
 * Notebooks are found through the document registry's "Notebook" widget factory (in
 * JupyterLab and Notebook 7 alike) rather than INotebookTracker: depending on
 * @jupyterlab/notebook would pull 250 MB of packages (mermaid) into every build for
 * one token. Documents open after all plugins are activated, so none is missed.
 */
const NOTEBOOK_FACTORY = 'Notebook';

/**
 * Every execute_request of this session says the page answers the guard's dialogs
 * (`metadata.colab_guard.dialogs`). The server only believes it to the extent that a
 * warn cell is then held for the dialog's answer instead of asked in the output: a
 * client that lies only loses the text prompt. CodeCell.execute sends through
 * `kernel.requestExecute(content, disposeOnDone, metadata)`, wrapped here per kernel.
 */
function declareDialogs(ctx: ISessionContext): void {
  type Execute = (content: unknown, disposeOnDone?: boolean, metadata?: JSONish) => unknown;
  const wrap = (): void => {
    const kernel = ctx.session?.kernel as unknown as {
      requestExecute?: Execute;
      colabGuardDialogs?: boolean;
    } | null;
    if (!kernel || kernel.colabGuardDialogs || typeof kernel.requestExecute !== 'function') {
      return;
    }
    const original = kernel.requestExecute.bind(kernel);
    kernel.requestExecute = (content, disposeOnDone, metadata) => {
      const theirs = isObject(metadata?.colab_guard) ? metadata?.colab_guard : {};
      return original(content, disposeOnDone, {
        ...(metadata ?? {}),
        colab_guard: { ...theirs, dialogs: true }
      });
    };
    kernel.colabGuardDialogs = true;
  };
  wrap();
  ctx.kernelChanged.connect(wrap);
  ctx.sessionChanged.connect(wrap);
}

/** Each notebook's session: its kernel messages and its kernel start. */
function watchNotebooks(app: JupyterFrontEnd): void {
  const watched = new Set<DocumentRegistry.WidgetFactory>();
  const connect = (): void => {
    const factory = app.docRegistry.getWidgetFactory(NOTEBOOK_FACTORY);
    if (!factory || watched.has(factory)) {
      return;
    }
    watched.add(factory);
    factory.widgetCreated.connect((_, widget: IDocumentWidget) => {
      const ctx = widget.context.sessionContext;
      watchKernelStart(app, ctx);
      declareDialogs(ctx);
      ctx.iopubMessage.connect((__, msg) => onIopub(app, msg));
    });
  };
  connect();
  app.docRegistry.changed.connect((_, change) => {
    // (the registry lower-cases factory names)
    const name = change.name?.toLowerCase();
    if (change.type === 'widgetFactory' && name === NOTEBOOK_FACTORY.toLowerCase()) {
      connect();
    }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-colab-guard:plugin',
  description: "Shows the acceptable-use guard's decisions as dialogs.",
  autoStart: true,
  activate: watchNotebooks
};

export default plugin;

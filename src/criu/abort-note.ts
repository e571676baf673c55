/**
 * The hook's abort note: the line it writes to STAGEGATE_ABORT_NOTE when the
 * coordinator aborts it, which criu may otherwise only have put in its log
 * file. The wrappers repeat it on their own stderr.
 */
import { readBoundedFile } from '../files';

/** The note's line; '' when the hook never aborted. */
export function readAbortNote(path: string): string {
  try {
    return readBoundedFile(path, 4096).toString('utf8').trim().slice(0, 1000);
  } catch {
    return '';
  }
}

/** Every `stagegate` command, in the order `stagegate --help` lists them. */
import type { Command } from '../command';
import { serve } from './serve';
import { restore } from './restore';
import { dump } from './dump';
import { open } from './open';
import { images } from './images';
import { check } from './check';
import { verify } from './verify';
import { status, watch } from './status';
import { trace } from './trace';
import { keygen } from './keygen';
import { criuPathCmd, hookPathCmd } from './paths';

export const COMMANDS: readonly Command[] = [
  serve,
  dump,
  restore,
  open,
  images,
  check,
  verify,
  status,
  watch,
  trace,
  hookPathCmd,
  criuPathCmd,
  keygen,
];

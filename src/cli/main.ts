/**
 * The `stagegate` command line: a dispatcher over the commands of
 * src/cli/commands/ (one module each: options, help, run). Heavy modules
 * (zeromq, rxjs, winston, protobufjs) are imported by the commands that need
 * them: `stagegate restore` sits on the restore path.
 */
import { StagegateError, UsageError } from '../errors';
import { parse } from './command';
import { COMMANDS } from './commands';

const MAIN_HELP = `usage: stagegate <command> [options]

Coordinates CRIU restores of several process trees: no tree resumes before
every tree has reached its final memory layout and the coordinator says go.

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(13)} ${c.summary}`).join('\n')}
  help          this text

'stagegate <command> --help' describes each command.`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(MAIN_HELP + '\n');
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) throw new UsageError(`unknown command '${name.slice(0, 40)}' (try 'stagegate --help')`);
  const args = parse(cmd, rest);
  if (args === 'help') {
    process.stdout.write(cmd.help + '\n');
    return 0;
  }
  return cmd.run(args);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof StagegateError) {
      process.stderr.write(`stagegate: [${err.code}] ${err.message}\n`);
      process.exitCode = err instanceof UsageError ? 64 : 1;
    } else {
      process.stderr.write(`stagegate: unexpected error: ${(err as Error)?.stack ?? err}\n`);
      process.exitCode = 70;
    }
  },
);

import { pino } from "pino";

export type Logger = pino.Logger;

/** JSON logs on stdout, one logger per process, tagged with the service and instance. */
export function createLogger(options: { service: string; instance: string; level: string }) {
  return pino({
    level: options.level,
    base: { service: options.service, instance: options.instance },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

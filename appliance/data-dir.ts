// The data root's layout: one folder per concern, one LevelDB per service.
import path from 'node:path';
import type { Config } from './config.ts';

export const dataPaths = (config: Pick<Config, 'dataDir'>) => ({
  root: config.dataDir,
  db: (service: string) => path.join(config.dataDir, 'db', service),
  media: path.join(config.dataDir, 'media'),
  outbox: path.join(config.dataDir, 'outbox'),
  tls: path.join(config.dataDir, 'tls'),
});

// The facts on the bus that make the audit log (who did what, and when): the sync service
// sends them to the cloud in batches, the ADMP uplink sends them to the operator one by one.
export const AUDITED_EVENTS = [
  'account.created', 'account.updated', 'account.deleted', 'account.password.changed', 'account.signed-in', 'account.sign-in.failed',
  'camera.added', 'camera.updated', 'camera.removed',
  'device.added', 'device.updated', 'device.removed', 'device.pending', 'device.pairing',
  'event.removed', 'sync.policy.changed', 'sync.target.changed',
  'admp.command.handled', 'admp.config.applied', 'admp.config.rejected', 'admp.provisioning.changed', 'system.services.restarted',
  'box.update.started', 'box.update.finished',
  'usp.campaign.started', 'usp.campaign.finished', 'usp.request.done', 'usp.endpoint.booted',
] as const;

// This browser's notifications by Web Push: the service worker shows them, the box sends them
// (encrypted for this browser) through the browser's own push service.
import { api } from './api.ts';

/** Whether this browser can get them at all (a secure page, a service worker, the Push API). */
export const pushPossible = () =>
  typeof Notification !== 'undefined' && 'serviceWorker' in navigator && 'PushManager' in window;

export async function subscribePush(name: string): Promise<void> {
  const registration = await navigator.serviceWorker.register('/sw.js');
  await navigator.serviceWorker.ready;
  if ((await Notification.requestPermission()) !== 'granted')
    throw new Error('Notifications are blocked for this site in the browser’s settings');
  const { publicKey } = await api<{ publicKey: string }>('/push/key');
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: publicKey,
  });
  await api('/push/subscriptions', { method: 'POST', body: { ...subscription.toJSON(), name } });
}

export async function unsubscribePush(): Promise<void> {
  const registration = await navigator.serviceWorker.getRegistration();
  const subscription = await registration?.pushManager.getSubscription();
  if (!subscription) return;
  await api('/push/subscriptions', { method: 'DELETE', body: { endpoint: subscription.endpoint } });
  await subscription.unsubscribe();
}
